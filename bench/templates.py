"""One message, written for Clarion's Jinja sandbox and for Django's template language alike
(the peers render it with Django templates, as their teams would)."""

SUBJECT = "{{ data.headline }}: up to {{ data.discount }}% off"
HTML = """<h1>{{ data.headline }}</h1>
<p>Hello {{ recipient.external_id }}, up to <strong>{{ data.discount }}% off</strong> this week.</p>
<p><a href="{{ data.url }}">See the deals</a></p>"""
TEXT = """{{ data.headline }}
Hello {{ recipient.external_id }}, up to {{ data.discount }}% off this week: {{ data.url }}"""
DATA = {"headline": "Autumn sale", "discount": 30, "url": "https://shop.example.com/deals"}
