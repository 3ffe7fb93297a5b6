"""Admin: write templates per channel, see versions and diffs, restore, preview, send a test."""

from __future__ import annotations

import difflib
import re

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from notifications.models import Recipient

from .compiling import CONTENT_SLOT, compile_content, templates_using
from .models import Layout, Template, TemplateVersion, UtmParameters
from .previews import preview_type
from .sends import TestSendError, send_test
from .services import template_version_save, templates_recompile
from .validation import CHANNEL_PARTS, TemplateInvalid, syntax_problems, validate_content

PART_FIELDS = ["subject", "html", "text", "title", "body", "link", "payload"]
SINGLE_LINE = {"subject", "title", "link"}
# Parts a preview or diff shows, in reading order.
PART_ORDER = ["subject", "title", "html", "text", "body", "link", "payload"]
# Preview pages render staff-written HTML in a sandboxed iframe; this keeps any script in it
# (or in the page) from running even if a browser ignored the iframe's sandbox attribute.
PREVIEW_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src https: data:; frame-src 'self'; form-action 'self'; base-uri 'none'"
)


class TemplateForm(forms.ModelForm):
    """The template's identity plus one field per part; saving makes a new version."""

    subject = forms.CharField(required=False, help_text="Email subject (one line).")
    html = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 14}))
    text = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 8}),
        help_text="Email: leave empty to derive it from the HTML. SMS: the message.",
    )
    title = forms.CharField(required=False, help_text="In-app title.")
    body = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 4}))
    link = forms.CharField(required=False, help_text="In-app link (optional).")
    payload = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 8}),
        help_text="Webhook JSON (values through | tojson); empty sends the raw data.",
    )

    class Meta:
        model = Template
        fields = ["notification_type", "channel", "locale", "layout"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        version = self.instance.current_version if self.instance.pk else None
        for part in PART_FIELDS:
            self.fields[part].strip = False
            if version is not None:
                self.initial[part] = version.content.get(part, "")
        self.report = None

    def content(self) -> dict[str, str]:
        channel = self.cleaned_data.get("channel")
        required, optional = CHANNEL_PARTS.get(channel, (set(), set()))
        return {
            part: self.cleaned_data[part]
            for part in PART_FIELDS
            if part in required or (part in optional and self.cleaned_data.get(part))
        }

    def clean(self):
        cleaned = super().clean()
        ntype, channel = cleaned.get("notification_type"), cleaned.get("channel")
        if ntype is None or channel is None:
            return cleaned
        self.report = validate_content(channel, self.content(), ntype.sample_data)
        for problem in self.report.errors:
            part = problem.split(",", 1)[0].split(":", 1)[0]
            self.add_error(part if part in PART_FIELDS else None, problem)
        if self.report.ok:
            # The compile step (layout, CSS) can refuse too: find out before anything is saved.
            draft = Template(notification_type=ntype, channel=channel, layout=cleaned.get("layout"))
            try:
                compile_content(draft, self.content())
            except TemplateInvalid as exc:
                for problem in exc.problems:
                    self.add_error("html", problem)
        return cleaned


class VersionInline(admin.TabularInline):
    model = TemplateVersion
    fields = ["number", "created_at", "created_by", "checksum_short", "actions"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ["-number"]
    verbose_name_plural = "version history"

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("created_by")

    @admin.display(description="checksum")
    def checksum_short(self, version: TemplateVersion) -> str:
        return version.checksum[:12]

    @admin.display(description="")
    def actions(self, version: TemplateVersion) -> str:
        base = "admin:templates_app_template_"
        links = [
            (
                reverse(f"{base}preview", args=[version.template_id]) + f"?version={version.id}",
                "preview",
            ),
            (reverse(f"{base}diff", args=[version.template_id]) + f"?b={version.id}", "diff"),
            (reverse(f"{base}restore", args=[version.template_id, version.id]), "restore"),
        ]
        return format_html_join(" · ", '<a href="{}">{}</a>', links)


@admin.register(Template)
class TemplateAdmin(admin.ModelAdmin):
    form = TemplateForm
    list_display = ["notification_type", "channel", "locale", "layout", "version", "updated_at"]
    list_filter = ["channel", "locale", "notification_type"]
    search_fields = ["notification_type__key", "notification_type__name"]
    list_select_related = ["notification_type", "layout", "current_version"]
    inlines = [VersionInline]
    readonly_fields = ["tools"]

    def get_fieldsets(self, request, obj=None):
        parts = PART_FIELDS
        if obj is not None:
            required, optional = CHANNEL_PARTS.get(obj.channel, (set(), set()))
            parts = [p for p in PART_FIELDS if p in required | optional]
        fieldsets = [
            (None, {"fields": ["notification_type", "channel", "locale", "layout"]}),
            ("Content", {"fields": parts, "description": _authoring_help()}),
        ]
        if obj is not None:
            fieldsets.insert(0, ("Preview and test", {"fields": ["tools"]}))
        return fieldsets

    @admin.display(description="current version")
    def version(self, template: Template) -> str:
        return f"v{template.current_version.number}" if template.current_version else "-"

    @admin.display(description="")
    def tools(self, template: Template) -> str:
        return format_html(
            '<a class="button" href="{}">Preview</a> <a class="button" href="{}">Send a test</a>',
            reverse("admin:templates_app_template_preview", args=[template.pk]),
            reverse("admin:templates_app_template_test_send", args=[template.pk]),
        )

    @transaction.atomic
    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        try:
            version, created = template_version_save(obj, form.content(), user=request.user)
        except TemplateInvalid as exc:  # form.clean checked the same; a race at most
            transaction.set_rollback(True)
            for problem in exc.problems:
                messages.error(request, problem)
            return
        if created:
            messages.success(request, f"Saved as version {version.number}.")
        else:
            messages.info(request, f"Content unchanged: still version {version.number}.")
        report = form.report
        for warning in report.warnings if report else []:
            messages.warning(request, warning)
        if report and report.sms:
            messages.info(request, f"SMS with the sample data: {report.sms}")

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path(
                "<int:pk>/preview/", view(self.preview_view), name="templates_app_template_preview"
            ),
            path("<int:pk>/diff/", view(self.diff_view), name="templates_app_template_diff"),
            path(
                "<int:pk>/restore/<int:version_id>/",
                view(self.restore_view),
                name="templates_app_template_restore",
            ),
            path(
                "<int:pk>/test-send/",
                view(self.test_send_view),
                name="templates_app_template_test_send",
            ),
            *super().get_urls(),
        ]

    def _template(self, request, pk: int, *, change: bool = False) -> Template:
        template = get_object_or_404(Template.objects.select_related("notification_type"), pk=pk)
        allowed = self.has_change_permission if change else self.has_view_permission
        if not allowed(request, template):
            raise PermissionDenied
        return template

    def _context(self, request, template: Template, title: str) -> dict:
        return {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "original": template,
            "template_obj": template,
            "title": title,
        }

    def preview_view(self, request, pk: int):
        template = self._template(request, pk)
        ntype = template.notification_type
        version = None
        if request.GET.get("version"):
            version = _version_or_404(template.versions.all(), request.GET["version"])
        given_locale = request.GET.get("locale", "").strip()[:16]
        locale = given_locale or template.locale
        can_view_recipients = request.user.has_perm("notifications.view_recipient")
        recipient = self._preview_recipient(request, can_view_recipients)
        if recipient is not None and not given_locale:
            # As sending picks: by the recipient's locale even when empty (the default then).
            locale = recipient.locale
        previews = preview_type(
            ntype, locale, template.channel, recipient=recipient, version=version
        )
        context = {
            **self._context(request, template, f"Preview: {ntype.name} ({locale or 'default'})"),
            "previews": previews,
            "locale": locale,
            "given_locale": given_locale,
            "recipient": recipient,
            "recipient_id": request.GET.get("recipient", "") if can_view_recipients else "",
            "can_view_recipients": can_view_recipients,
            "version": version or template.current_version,
            "locales": sorted(set(ntype.templates.values_list("locale", flat=True))),
        }
        response = TemplateResponse(request, "admin/templates_app/template/preview.html", context)
        response["Content-Security-Policy"] = PREVIEW_CSP
        return response

    def _preview_recipient(self, request, can_view_recipients: bool) -> Recipient | None:
        """The recipient chosen with ?recipient=, if the staff member may see recipients.

        A preview as someone shows their address and working signed links (unsubscribe,
        preferences). Without the permission the choice is ignored with a message rather than
        a 403, so the page still previews with the sample data and says why.
        """
        external_id = request.GET.get("recipient")
        if not external_id:
            return None
        if not can_view_recipients:
            messages.warning(
                request,
                "Previewing as a recipient needs permission to view recipients: "
                "showing the sample data.",
            )
            return None
        recipient = Recipient.objects.filter(
            external_id=external_id, erased_at__isnull=True
        ).first()
        if recipient is None:
            messages.warning(request, "No such recipient: showing the sample data.")
        return recipient

    def diff_view(self, request, pk: int):
        template = self._template(request, pk)
        versions = template.versions.all()
        b = _version_or_404(versions, request.GET.get("b") or template.current_version_id)
        a_id = request.GET.get("a")
        a = (
            _version_or_404(versions, a_id)
            if a_id
            else versions.filter(number__lt=b.number).order_by("-number").first()
        )
        tables = []
        if a is not None:
            parts = [p for p in PART_ORDER if p in a.content or p in b.content]
            for part in parts:
                before = a.content.get(part, "").splitlines()
                after = b.content.get(part, "").splitlines()
                if before != after:
                    # HtmlDiff escapes the lines it shows.
                    table = difflib.HtmlDiff(wrapcolumn=80).make_table(
                        before, after, f"v{a.number}", f"v{b.number}", context=True
                    )
                    tables.append((part, mark_safe(table)))  # noqa: S308
        context = {
            **self._context(request, template, f"Changes in v{b.number}"),
            "a": a,
            "b": b,
            "tables": tables,
            "versions": versions,
        }
        return TemplateResponse(request, "admin/templates_app/template/diff.html", context)

    def restore_view(self, request, pk: int, version_id: int):
        template = self._template(request, pk, change=True)
        old = get_object_or_404(template.versions, pk=version_id)
        if request.method == "POST":
            try:
                version, created = template_version_save(template, old.content, user=request.user)
            except TemplateInvalid as exc:
                messages.error(request, f"v{old.number} cannot be restored: {exc}")
            else:
                if created:
                    messages.success(
                        request, f"v{old.number} restored as version {version.number}."
                    )
                else:
                    messages.info(request, f"v{old.number} is already the current content.")
            return redirect("admin:templates_app_template_change", template.pk)
        context = {**self._context(request, template, f"Restore v{old.number}?"), "old": old}
        return TemplateResponse(request, "admin/templates_app/template/restore.html", context)

    def test_send_view(self, request, pk: int):
        template = self._template(request, pk, change=True)
        delivery = None
        if request.method == "POST":
            try:
                delivery = send_test(
                    template, user=request.user, phone=request.POST.get("phone", "")
                )
            except TestSendError as exc:
                messages.error(request, str(exc))
            else:
                level = messages.SUCCESS if delivery.status == "sent" else messages.WARNING
                detail = f": {delivery.error_message}" if delivery.error_message else ""
                messages.add_message(
                    request,
                    level,
                    f"Test {delivery.channel} delivery #{delivery.id}: {delivery.status}{detail}",
                )
        context = {
            **self._context(request, template, f"Send a test: {template}"),
            "delivery": delivery,
            "email": request.user.email,
        }
        return TemplateResponse(request, "admin/templates_app/template/test_send.html", context)


def _authoring_help() -> str:
    return (
        "Jinja2, sandboxed. Variables: data.* (the event), recipient.*, links.*, "
        "notification.*. See docs/templates.md. Saving checks the syntax and makes a new "
        "version only if something changed."
    )


def _version_or_404(versions, pk) -> TemplateVersion:
    """A version named in a query string; anything but one of its ids is a 404."""
    # ASCII digits only ("²".isdigit() is true, yet int() refuses it), and few enough for
    # int() and a bigint.
    if not re.fullmatch(r"[0-9]{1,18}", str(pk)):
        raise Http404("No such version.")
    return get_object_or_404(versions, pk=int(pk))


class RecompileOnSave:
    """Saving or deleting a layout or UTM parameters gives the emails using them a new version."""

    def affected(self, obj):
        """The email templates whose compiled form depends on ``obj``."""
        raise NotImplementedError

    def save_model(self, request, obj, form, change):
        saved = type(obj).objects.get(pk=obj.pk) if change else None
        before = set(self.affected(saved).values_list("pk", flat=True)) if saved else set()
        super().save_model(request, obj, form, change)
        # Those compiled with it as it was (a layout no longer "default", UTM parameters moved
        # to another type) and as it is now.
        self.recompile(request, before | set(self.affected(obj).values_list("pk", flat=True)))

    def delete_model(self, request, obj):
        self.delete_queryset(request, type(obj).objects.filter(pk=obj.pk))

    def delete_queryset(self, request, queryset):
        ids = {pk for obj in queryset for pk in self.affected(obj).values_list("pk", flat=True)}
        super().delete_queryset(request, queryset)
        self.recompile(request, ids)

    def recompile(self, request, template_ids: set[int]) -> None:
        templates = Template.objects.filter(pk__in=template_ids, current_version__isnull=False)
        try:
            with transaction.atomic():
                changed = templates_recompile(
                    templates.select_related("notification_type", "current_version"),
                    user=request.user,
                )
        except TemplateInvalid as exc:
            messages.error(request, f"Templates not recompiled: {exc}")
            return
        messages.info(request, f"{changed} email template(s) got a new version.")


class LayoutForm(forms.ModelForm):
    class Meta:
        model = Layout
        fields = ["key", "name", "html", "text"]

    def clean(self):
        cleaned = super().clean()
        for part in ("html", "text"):
            source = cleaned.get(part) or ""
            if part == "html" and not CONTENT_SLOT.search(source):
                self.add_error(part, "A layout must place the content with {{ content }}.")
                continue
            # Checked as it will be compiled: with the content spliced in its slot.
            for problem in syntax_problems({part: CONTENT_SLOT.sub("", source)}):
                self.add_error(part, problem)
        return cleaned


@admin.register(Layout)
class LayoutAdmin(RecompileOnSave, admin.ModelAdmin):
    form = LayoutForm
    list_display = ["key", "name", "updated_at"]
    search_fields = ["key", "name"]

    def affected(self, obj):
        return templates_using(layout=obj)


class UtmForm(forms.ModelForm):
    class Meta:
        model = UtmParameters
        fields = ["notification_type", "params"]

    def clean_params(self):
        params = self.cleaned_data["params"]
        if not isinstance(params, dict) or any(
            not (isinstance(k, str) and k.startswith("utm_") and isinstance(v, str))
            for k, v in params.items()
        ):
            raise forms.ValidationError('Map utm_* names to text, e.g. {"utm_source": "x"}.')
        return params


@admin.register(UtmParameters)
class UtmParametersAdmin(RecompileOnSave, admin.ModelAdmin):
    form = UtmForm
    list_display = ["notification_type", "params"]

    def affected(self, obj):
        return templates_using(ntype=obj.notification_type)
