"""Who may get what on which channel, and when: the one place that decides.

Routing plans deliveries with ``decide`` (and a ``CapLedger``) and writes nothing; sending
calls ``decide`` again when a batch is claimed, so an unsubscribe stops what is already
queued, deferred or retrying. All lookups are done for a whole batch of recipients at once
(one query each). Broadcasts use ``decide_audience``, the same rules with the person's
choices resolved in SQL over a Recipient queryset; ``tests/preferences/test_eligibility_cases.py``
runs one table of cases through both.

Rules, in order: erased; no address; suppressed (a suppression of the channel stops even a
password reset); then, for marketing only: marketing suppression, all marketing off, the
channel off, the type (a type row wins over its category) or else the category and its
channel off, an opt-in type nobody turned on; then the category's frequency (daily / weekly
digest), quiet hours (defer to their end) and, per notification, the daily cap (CapLedger).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.db import connection
from django.db.models import Case, Exists, OuterRef, Q, QuerySet, Subquery, Value, When
from django.db.models.functions import Coalesce
from psycopg.pq import TransactionStatus

from notifications import lookups  # noqa: F401 - registers field__any
from notifications.models import Delivery, NotificationType, Recipient, Traffic

from .addresses import address_hash, recipient_address
from .models import Frequency, Preference, QuietHours, Suppression, TypeDefault

# Digest deliveries belong to a notification type of this key prefix, one per category.
DIGEST_TYPE_PREFIX = "digest--"


class Skip:
    """Reasons a delivery is skipped, recorded on the Delivery for support staff."""

    NO_ADDRESS = "no_address"
    SUPPRESSED = "suppressed"
    OPTED_OUT_TYPE = "opted_out_type"
    OPTED_OUT_CATEGORY = "opted_out_category"
    OPTED_OUT_CHANNEL = "opted_out_channel"
    OPTED_OUT_MARKETING = "opted_out_marketing"
    NOT_OPTED_IN = "not_opted_in"
    CAPPED = "capped"
    ERASED = "erased"


@dataclass(frozen=True)
class Decision:
    recipient_id: int
    channel: str
    skip_reason: str = ""
    defer_until: datetime | None = None
    # "daily" or "weekly": held as a ``digested`` delivery for the next digest.
    digest: str = ""

    @property
    def allowed(self) -> bool:
        return not self.skip_reason


def is_digest_type(ntype: NotificationType) -> bool:
    return ntype.key.startswith(DIGEST_TYPE_PREFIX)


def decide(
    ntype: NotificationType,
    recipients: Iterable[Recipient],
    channels: Iterable[str],
    now: datetime,
) -> list[Decision]:
    """One decision per (recipient, channel), in recipient order then channel order."""
    recipients = list(recipients)
    channels = list(channels)
    suppressed = _suppressed_hashes(recipients, channels)
    marketing = not ntype.is_transactional
    preferences = _preferences(ntype, recipients) if marketing else {}
    quiet = quiet_windows(recipients) if marketing else {}
    default = TypeDefault.objects.filter(notification_type=ntype).first() if marketing else None
    decisions = []
    for recipient in recipients:
        prefs = preferences.get(recipient.id, {})
        for channel in channels:
            reason = _skip_reason(
                ntype,
                recipient,
                channel,
                suppressed,
                lambda: opt_out_reason(prefs, ntype, channel, default),  # noqa: B023 - called at once
            )
            decision = Decision(recipient.id, channel, reason)
            if marketing and not reason:
                decision = replace(
                    decision,
                    digest=_digest_frequency(ntype, prefs, default),
                    defer_until=quiet_until(quiet.get(recipient.id), recipient, now),
                )
            decisions.append(decision)
    return decisions


def _skip_reason(ntype, recipient, channel, suppressed, opt_out: Callable[[], str]) -> str:
    """The reason, checking the person's own choices (``opt_out``) only when it comes to it."""
    if recipient.erased_at is not None:
        return Skip.ERASED
    address = recipient_address(recipient, channel)
    if not address:
        return Skip.NO_ADDRESS
    digest = address_hash(channel, address)
    if (channel, digest, Suppression.Scope.ALL) in suppressed:
        return Skip.SUPPRESSED
    if ntype.is_transactional:
        # Password resets and security alerts ignore marketing opt-outs, never suppressions.
        return ""
    if (channel, digest, Suppression.Scope.MARKETING) in suppressed:
        return Skip.SUPPRESSED
    return opt_out()


def _off(pref: Preference | None) -> bool:
    return pref is not None and (not pref.enabled or pref.frequency == Frequency.OFF)


def opt_out_reason(
    prefs: dict, ntype: NotificationType, channel: str, default: TypeDefault | None = None
) -> str:
    """Why a marketing message may not go out on a channel ("" when it may).

    ``prefs`` maps (category_id, type_id, channel) to the person's Preference rows.
    "All marketing off" and "this channel off" always win; a row for the type decides
    before the category, so a person may keep one type of a category they left. An opt-in
    type (its default disabled) needs the type or its category turned on explicitly.
    """
    if _off(prefs.get((None, None, ""))):
        return Skip.OPTED_OUT_MARKETING
    if _off(prefs.get((None, None, channel))):
        return Skip.OPTED_OUT_CHANNEL
    for scope in ((None, ntype.id, channel), (None, ntype.id, "")):
        if scope in prefs:
            return Skip.OPTED_OUT_TYPE if _off(prefs[scope]) else ""
    category = ntype.category_id
    if _off(prefs.get((category, None, ""))) or _off(prefs.get((category, None, channel))):
        return Skip.OPTED_OUT_CATEGORY
    if default is not None and not default.enabled and (category, None, "") not in prefs:
        return Skip.NOT_OPTED_IN
    return ""


def _digest_frequency(ntype: NotificationType, prefs: dict, default=None) -> str:
    """The digest cadence: the person's for the category, else the type's default."""
    if is_digest_type(ntype):
        return ""
    pref = prefs.get((ntype.category_id, None, ""))
    frequency = pref.frequency if pref is not None else getattr(default, "frequency", "")
    return frequency if frequency in (Frequency.DAILY, Frequency.WEEKLY) else ""


def _preferences(ntype: NotificationType, recipients: list[Recipient]) -> dict:
    by_recipient: dict[int, dict] = {}
    rows = Preference.objects.filter(recipient__in=[r.id for r in recipients]).filter(
        Q(notification_type_id=ntype.id)
        | Q(category_id=ntype.category_id)
        | Q(category__isnull=True, notification_type__isnull=True)
    )
    for pref in rows:
        scope = (pref.category_id, pref.notification_type_id, pref.channel)
        by_recipient.setdefault(pref.recipient_id, {})[scope] = pref
    return by_recipient


def _suppressed_hashes(recipients: list[Recipient], channels: list[str]) -> set[tuple]:
    return _suppressions_of(
        {
            address_hash(c, recipient_address(r, c))
            for r in recipients
            for c in channels
            if recipient_address(r, c)
        }
    )


def _suppressions_of(hashes: set[str]) -> set[tuple]:
    """(channel, hash, scope) of the suppressions among some address hashes, one query."""
    if not hashes:
        return set()
    rows = Suppression.objects.filter(address_hash__any=hashes).values_list(
        "channel", "address_hash", "scope"
    )
    return set(rows)


# --- Local time: quiet hours, caps, digest mornings -----------------------------------------


def zone_of(recipient: Recipient) -> ZoneInfo:
    try:
        return ZoneInfo(recipient.timezone or "UTC")
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a folder, as "America"
        return ZoneInfo("UTC")


def _parse_window(text: str) -> tuple[time, time] | None:
    try:
        start, end = (time.fromisoformat(part.strip()) for part in text.split("-"))
    except ValueError:
        return None
    return (start, end) if start != end else None


def quiet_windows(recipients: list[Recipient]) -> dict[int, tuple[time, time]]:
    """Each person's quiet window (their own, else DEFAULT_QUIET_HOURS), one query."""
    default = _parse_window(settings.DEFAULT_QUIET_HOURS) if settings.DEFAULT_QUIET_HOURS else None
    own = {
        q.recipient_id: (q.start, q.end)
        for q in QuietHours.objects.filter(
            recipient_id__any={r.id for r in recipients}, start__isnull=False, end__isnull=False
        )
    }
    windows = dict.fromkeys((r.id for r in recipients), default) if default else {}
    windows.update(own)
    return {k: v for k, v in windows.items() if v}


def quiet_until(
    window: tuple[time, time] | None, recipient: Recipient, now: datetime
) -> datetime | None:
    """The end of the quiet window ``now`` falls in (as an aware datetime), else None."""
    if window is None:
        return None
    start, end = window
    local = now.astimezone(zone_of(recipient))
    t = local.time().replace(tzinfo=None)
    inside = start <= t < end if start < end else (t >= start or t < end)
    if not inside:
        return None
    # In the hour a clock repeats (autumn), the window ends in the same pass of it as now.
    until = datetime.combine(local.date(), end, tzinfo=local.tzinfo).replace(fold=local.fold)
    if until.timestamp() <= local.timestamp():  # instants, not wall times
        until = datetime.combine(local.date() + timedelta(days=1), end, tzinfo=local.tzinfo)
    return until


def local_day_start(recipient: Recipient, now: datetime) -> datetime:
    local = now.astimezone(zone_of(recipient))
    return datetime.combine(local.date(), time(0), tzinfo=local.tzinfo)


def _local_day(recipient: Recipient, now: datetime) -> tuple[datetime, datetime]:
    """The start of the recipient's local day and of the next (23 or 25 hours on a DST day)."""
    local = now.astimezone(zone_of(recipient))
    zone = local.tzinfo
    return (
        datetime.combine(local.date(), time(0), tzinfo=zone),
        datetime.combine(local.date() + timedelta(days=1), time(0), tzinfo=zone),
    )


# Deliveries that count against the daily marketing cap: gone out, or on their way (a
# deferred one on the day it is due).
_GONE = [
    Delivery.Status.SENT,
    Delivery.Status.DELIVERED,
    Delivery.Status.BOUNCED,
    Delivery.Status.COMPLAINED,
]
_ON_ITS_WAY = [Delivery.Status.PENDING, Delivery.Status.SENDING]
_WHEN = ["status", "sent_at", "status_changed_at", "next_attempt_at"]


# How far ahead the cap's defer mode may push a marketing message before it is skipped.
CAP_DEFER_DAYS = 7


class CapLedger:
    """Marketing messages each person got today (local day), to enforce the daily cap.

    Counted by when each delivery last changed state (routed, sent) on the shared clock.
    A message is one notification, whatever number of channels it went out on. Built with
    one query for a batch of recipients; routing asks it about each planned delivery in
    order, so several notifications in one batch are counted too.
    """

    def __init__(self, recipients: Iterable[Recipient], now: datetime):
        self.now = now
        self.recipients = {r.id: r for r in recipients}
        # A batch of receipts counts nobody; building the query alone took ~170 us.
        own = (
            dict(
                QuietHours.objects.filter(
                    recipient_id__any=self.recipients.keys(), daily_marketing_cap__isnull=False
                ).values_list("recipient_id", "daily_marketing_cap")
            )
            if self.recipients
            else {}
        )
        self.caps = {
            rid: own.get(rid, settings.MARKETING_DAILY_CAP or None) for rid in self.recipients
        }
        self.caps = {rid: cap for rid, cap in self.caps.items() if cap is not None}
        self.seen: dict[int, set] = {rid: set() for rid in self.caps}
        # Messages already deferred to later days, by local day: a deferral goes to the
        # first day with room, so a day's overflow does not all land on the next one.
        self.later: dict[int, dict[date, set]] = {rid: defaultdict(set) for rid in self.caps}
        if self.caps:
            self._load()

    def _load(self) -> None:
        days = {rid: _local_day(self.recipients[rid], self.now) for rid in self.caps}
        earliest = min(start for start, _ in days.values())
        rows = Delivery.objects.filter(
            Q(status__in=_GONE, sent_at__gte=earliest)
            | Q(status__in=_ON_ITS_WAY, status_changed_at__gte=earliest)
            | Q(status=Delivery.Status.DEFERRED, next_attempt_at__gte=earliest),
            recipient_id__any=self.caps.keys(),
            traffic=Traffic.MARKETING,
            is_test=False,
        ).values_list("recipient_id", "notification_id", *_WHEN)
        for rid, notification_id, status, sent_at, changed_at, due in rows:
            # The day a message counts for is the day it goes out: a sent one's sending (not a
            # later delivery report), a deferred one's due time (a broadcast scheduled for
            # next week counts next week), and today for one on its way now.
            if status in _GONE:
                when = sent_at
            elif status == Delivery.Status.DEFERRED:
                when = due
            else:
                when = changed_at
            start, end = days[rid]
            if when is not None and start <= when < end:
                self.seen[rid].add(notification_id)
            elif status == Delivery.Status.DEFERRED and when is not None and when >= end:
                local_day = when.astimezone(end.tzinfo).date()
                self.later[rid][local_day].add(notification_id)

    def admit(self, notification_id, decision: Decision, traffic: str) -> Decision:
        """The decision, or a capped one when this notification would exceed the cap."""
        rid = decision.recipient_id
        if traffic != Traffic.MARKETING or not decision.allowed or decision.digest:
            return decision
        if rid not in self.caps:
            return decision
        seen = self.seen[rid]
        if notification_id in seen:
            return decision
        if len(seen) < self.caps[rid]:
            seen.add(notification_id)
            return decision
        day = self._day_with_room(rid, notification_id)
        if settings.MARKETING_CAP_MODE == "defer" and day is not None:
            return replace(decision, defer_until=max(day, decision.defer_until or day))
        return replace(decision, skip_reason=Skip.CAPPED)

    def _day_with_room(self, rid: int, notification_id) -> datetime | None:
        """The start of the first local day after today with room under the cap, within
        CAP_DEFER_DAYS (marketing held longer is stale); None past that, or with a cap of 0."""
        if self.caps[rid] == 0:
            return None
        today = local_day_start(self.recipients[rid], self.now)
        for days in range(1, CAP_DEFER_DAYS + 1):
            day = today + timedelta(days=days)  # local midnight, across DST too
            if len(self.later[rid][day.date()] - {notification_id}) < self.caps[rid]:
                self.later[rid][day.date()].add(notification_id)
                return day
        return None


# --- The same rules, set-based (broadcasts to audiences) ------------------------------------
#
# The person's choices are resolved in SQL, one query per batch of recipients whatever its
# size, so an audience path can select (or INSERT ... SELECT) from the annotated queryset.
# The case table checks this form against ``opt_out_reason`` case by case.


def _rows(**scope) -> QuerySet:
    return Preference.objects.filter(recipient=OuterRef("pk"), **scope)


def _has(**scope) -> Q:
    return Q(Exists(_rows(**scope)))


def _off_sql(**scope) -> Q:
    return Q(Exists(_rows(**scope).filter(Q(enabled=False) | Q(frequency=Frequency.OFF))))


def opt_out_sql(ntype: NotificationType, channel: str, default: TypeDefault | None):
    """``opt_out_reason`` as one SQL expression over Recipient rows ("" when allowed)."""
    everything = {"category__isnull": True, "notification_type__isnull": True}
    own_type = {"notification_type_id": ntype.id}
    own_category = {"category_id": ntype.category_id, "notification_type__isnull": True}
    whens = [
        When(_off_sql(**everything, channel=""), then=Value(Skip.OPTED_OUT_MARKETING)),
        When(_off_sql(**everything, channel=channel), then=Value(Skip.OPTED_OUT_CHANNEL)),
        When(_off_sql(**own_type, channel=channel), then=Value(Skip.OPTED_OUT_TYPE)),
        When(_has(**own_type, channel=channel), then=Value("")),
        When(_off_sql(**own_type, channel=""), then=Value(Skip.OPTED_OUT_TYPE)),
        When(_has(**own_type, channel=""), then=Value("")),
        When(
            _off_sql(**own_category, channel="") | _off_sql(**own_category, channel=channel),
            then=Value(Skip.OPTED_OUT_CATEGORY),
        ),
    ]
    if default is not None and not default.enabled:
        whens.append(When(~_has(**own_category, channel=""), then=Value(Skip.NOT_OPTED_IN)))
    return Case(*whens, default=Value(""))


def frequency_sql(ntype: NotificationType, default: TypeDefault | None):
    """The cadence ``_digest_frequency`` reads: the category's row, else the type's default."""
    chosen = _rows(category_id=ntype.category_id, notification_type__isnull=True, channel="")
    return Coalesce(
        Subquery(chosen.values("frequency")[:1]), Value(getattr(default, "frequency", ""))
    )


@dataclass(slots=True)
class Contact:
    """What the rules read of a recipient, loaded as plain values for audience batches.

    Building 100,000 Recipient models (JSON fields and all) cost more than deciding for them;
    every helper here reads only these attributes, so a Contact stands in for a Recipient.
    """

    id: int
    external_id: str
    email: str
    phone: str
    webhook_url: str
    timezone: str
    erased_at: datetime | None


CONTACT_FIELDS = ("id", "external_id", "email", "phone", "webhook_url", "timezone", "erased_at")


def decide_audience(
    ntype: NotificationType,
    recipients: QuerySet,
    channel: str,
    now: datetime,
    batch_size: int = 1000,
) -> Iterator[Decision]:
    """Decisions for every recipient of a queryset on one channel, in recipient order."""
    for _, decisions in audience_batches(ntype, recipients, [channel], now, batch_size):
        yield from decisions


def audience_batches(
    ntype: NotificationType,
    recipients: QuerySet,
    channels: list[str],
    now: datetime,
    batch_size: int = 1000,
    after: int = 0,
) -> Iterator[tuple[list[Contact], list[Decision]]]:
    """Each keyset batch of a queryset's recipients past id ``after``, in id order, with their
    decisions on every channel.

    Per batch, whatever its size: one query for the recipients with their choices resolved
    in SQL (one expression per channel), one for suppressions (by keyed hash) and, for
    marketing, one for quiet hours. The daily cap is applied by the caller per notification,
    with a ``CapLedger`` over the batch's contacts, as routing does.
    """
    marketing = not ntype.is_transactional
    default = TypeDefault.objects.filter(notification_type=ntype).first() if marketing else None
    names = list(CONTACT_FIELDS)
    if marketing:
        recipients = recipients.annotate(
            _frequency=frequency_sql(ntype, default),
            **{f"_opt_out_{c}": opt_out_sql(ntype, c, default) for c in channels},
        )
        names += ["_frequency", *(f"_opt_out_{c}" for c in channels)]
    digests = () if is_digest_type(ntype) else (Frequency.DAILY, Frequency.WEEKLY)
    width = len(CONTACT_FIELDS)
    last = after
    while True:
        page = recipients.filter(pk__gt=last).order_by("pk").values_list(*names)[:batch_size]
        with keyset_plan():
            rows = list(page)
        if not rows:
            return
        last = rows[-1][0]
        contacts = [Contact(*row[:width]) for row in rows]
        hashes = {
            (contact.id, channel): address_hash(channel, address)
            for contact in contacts
            for channel in channels
            if (address := recipient_address(contact, channel))
        }
        suppressed = _suppressions_of(set(hashes.values()))
        quiet = quiet_windows(contacts) if marketing else {}
        decisions: list[Decision] = []
        for contact, row in zip(contacts, rows, strict=True):
            frequency = row[width] if marketing else ""
            for index, channel in enumerate(channels):
                reason = _batch_skip_reason(
                    marketing, contact, channel, hashes.get((contact.id, channel)), suppressed
                )
                if not reason and marketing:
                    reason = row[width + 1 + index]
                if reason or not marketing:
                    decisions.append(Decision(contact.id, channel, reason))
                    continue
                decisions.append(
                    Decision(
                        contact.id,
                        channel,
                        digest=frequency if frequency in digests else "",
                        defer_until=quiet_until(quiet.get(contact.id), contact, now),
                    )
                )
        yield contacts, decisions


@contextmanager
def keyset_plan() -> Iterator[None]:
    """Plan settings for one audience batch query, put back after it.

    - No JIT compilation: every recipient's choices resolved in SQL make the query look
      costly enough to compile, and compiling took ~45 ms of a ~100 ms query, every batch.
    - No sorting: a batch is the next recipients in id order, which the primary key reads
      in that order. With no statistics on the recipients (a new install after an import,
      autovacuum behind) PostgreSQL guessed the table small, then read all of it and sorted
      it for every batch: ~21 ms a batch of 5,000 out of 100,000 against ~5 ms, and work
      that grows with the square of the audience.

    Set for the transaction (``set_config``'s ``true``), so it holds through any pooler,
    and put back after the query, so nothing else in the transaction is planned under it.
    Outside a transaction there is nothing to hold it: PostgreSQL plans as it would.
    """
    if connection.vendor != "postgresql" or not connection.in_atomic_block:
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT current_setting('jit'), current_setting('enable_sort'),"
            " set_config('jit', 'off', true), set_config('enable_sort', 'off', true)"
        )
        jit, sort, *_ = cursor.fetchone()
        try:
            yield
        finally:
            # Put back whatever stopped the query (a time limit, say), unless the database
            # failed it: that transaction is over, and its rollback undoes the settings.
            if connection.connection.info.transaction_status != TransactionStatus.INERROR:
                cursor.execute(
                    "SELECT set_config('jit', %s, true), set_config('enable_sort', %s, true)",
                    [jit, sort],
                )


def _batch_skip_reason(
    marketing: bool, contact: Contact, channel: str, digest, suppressed: set
) -> str:
    """``_skip_reason`` up to the person's own choices, with the address hash at hand."""
    if contact.erased_at is not None:
        return Skip.ERASED
    if digest is None:
        return Skip.NO_ADDRESS
    if (channel, digest, Suppression.Scope.ALL) in suppressed:
        return Skip.SUPPRESSED
    if marketing and (channel, digest, Suppression.Scope.MARKETING) in suppressed:
        return Skip.SUPPRESSED
    return ""
