"""End-user pages: preference center and one-click unsubscribe."""

urlpatterns: list = []
