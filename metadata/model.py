"""The bundle format `loom/1` as pydantic models (SPEC §3).

These models are the single source of the format: the JSON Schema that
`loom pack validate` and pack authors' editors use is generated from them
(`schema.py`), and every other part of Loom reads metadata through them.
Unknown keys are refused everywhere (`extra="forbid"`). Whatever the schema
accepts, these models parse; rules the schema cannot say (reserved names,
cross references) are the semantic checks of `checks.py`.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

FORMAT = "loom/1"
LOCALES = ("en", "zh-CN")

NAME_PATTERN = r"^(?!.*__)[a-z][a-z0-9_]{0,62}$(?!\n)"
SYSTEM_FIELDS = ("id", "version", "created_at", "updated_at", "created_by", "updated_by", "owner")

# Functions of the expression language (SPEC §4): a field may not be named
# like one, so that `today` always means the function.
EXPRESSION_FUNCTIONS = (
    "is_blank", "coalesce", "len", "lower", "upper", "trim", "contains", "starts_with",
    "ends_with", "matches", "concat", "text", "number", "round", "abs", "min", "max",
    "today", "now", "date", "add_days", "add_months", "days_between", "year", "month",
    "day", "weekday", "includes", "is_new", "is_changed", "prior_value", "current_user",
    "has_role", "stage_probability", "stage_category", "approval_status",
)


Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
Expression = Annotated[str, StringConstraints(min_length=1, max_length=4000)]
LocaleTag = Annotated[str, StringConstraints(pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$(?!\n)")]
LocalizedText = Union[str, dict[LocaleTag, str]]
"""A plain string, or a map of locales: {"en": "Opportunity", "zh-CN": "商机"}."""

Uid = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$(?!\n)")]
VersionRange = Annotated[str, StringConstraints(pattern=r"^\s*(==|>=|<=|>|<|!=|~=)?\s*\d+(\.\d+){0,2}(\s*,\s*(==|>=|<=|>|<|!=|~=)\s*\d+(\.\d+){0,2})*\s*$")]
SemVer = Annotated[str, StringConstraints(pattern=r"^\d+\.\d+\.\d+([-+][0-9A-Za-z.-]+)?$(?!\n)")]
Literal_ = Union[str, int, float, bool, None, list[Union[str, int, float, bool]]]
FixedValue = Union[str, int, float, bool]   # a value metadata sets a field to (a conversion, an approval)


class Strict(BaseModel):
    # Python's `re` for patterns: the name pattern needs a look-ahead.
    # Patterns end in `$(?!\n)`: Python's `$` also matches before a final
    # newline, so "lead\n" would pass; ECMA regexes (editors) read it the same.
    model_config = ConfigDict(extra="forbid", populate_by_name=True, regex_engine="python-re")


def localized(text: LocalizedText | None, locale: str, fallback: str = "") -> str:
    """The text in `locale`, else English, else any locale, else `fallback`."""
    if text is None:
        return fallback
    if isinstance(text, str):
        return text
    for candidate in (locale, locale.split("-")[0], "en"):
        if text.get(candidate):
            return text[candidate]
    return next(iter(text.values()), fallback)


# --- fields -----------------------------------------------------------------

class PhonePlace(Strict):
    """Where a Chinese phone number is registered (its province or city),
    filled into a blank field on save from the number in `field`."""

    field: Name
    part: Literal["province", "city"]


class FieldBase(Strict):
    name: Name
    uid: Uid | None = None
    label: LocalizedText | None = None
    help: LocalizedText | None = None
    required: bool = False
    unique: bool = False
    indexed: bool = False
    default: Literal_ = None
    default_expr: Expression | None = None
    required_if: Expression | None = None
    visible_if: Expression | None = None
    read_only_if: Expression | None = None
    read_only: bool = False
    # text and picklist fields: filled, when blank, from a phone number's place
    fill_from_phone: PhonePlace | None = None


class TextField(FieldBase):
    type: Literal["text"]
    max_length: Annotated[int, Field(ge=1, le=10000)] = 255
    pattern: Annotated[str, StringConstraints(min_length=1, max_length=1000)] | None = None


class LongTextField(FieldBase):
    type: Literal["long_text"]
    max_length: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    # html: rich text (headings, lists, links, emphasis), sanitised on every save
    format: Literal["plain", "html"] = "plain"


Number = Union[int, float]


class IntegerField(FieldBase):
    type: Literal["integer"]
    min: int | None = None
    max: int | None = None


class DecimalField(FieldBase):
    type: Literal["decimal"]
    precision: Annotated[int, Field(ge=1, le=38)] = 18
    scale: Annotated[int, Field(ge=0, le=18)] = 2
    min: Number | None = None
    max: Number | None = None


class CurrencyField(FieldBase):
    type: Literal["currency"]
    scale: Annotated[int, Field(ge=0, le=6)] = 2
    min: Number | None = None
    max: Number | None = None


class PercentField(FieldBase):
    type: Literal["percent"]
    scale: Annotated[int, Field(ge=0, le=6)] = 2
    min: Number | None = None
    max: Number | None = None


class BooleanField(FieldBase):
    type: Literal["boolean"]


IsoDate = Annotated[str, StringConstraints(pattern=r"^\d{4}-\d{2}-\d{2}$(?!\n)")]
IsoDateTime = Annotated[str, StringConstraints(pattern=r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?$(?!\n)")]


class DateField(FieldBase):
    type: Literal["date"]
    min: IsoDate | None = None
    max: IsoDate | None = None


class DateTimeField(FieldBase):
    type: Literal["datetime"]
    min: IsoDateTime | None = None
    max: IsoDateTime | None = None


class EmailField(FieldBase):
    type: Literal["email"]


class PhoneField(FieldBase):
    type: Literal["phone"]


class UrlField(FieldBase):
    type: Literal["url"]


Color = Annotated[str, StringConstraints(pattern=r"^(#[0-9a-fA-F]{6}|[a-z]+)$(?!\n)")]


class Option(Strict):
    value: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    label: LocalizedText | None = None
    color: Color | None = None
    # kept on the records that hold it, no longer offered or accepted anew
    retired: bool = False
    # values this option had before: publishing moves the records holding
    # them to its value (a rename of a value records hold)
    previous: list[Annotated[str, StringConstraints(min_length=1, max_length=100)]] = []
    # of a dependent picklist: the values of its `depends_on` field under
    # which this option is offered (none: under every value)
    parents: list[Annotated[str, StringConstraints(min_length=1, max_length=100)]] = []


class PicklistField(FieldBase):
    type: Literal["picklist"]
    options: Annotated[list[Option], Field(min_length=1)]
    # a picklist of the same object whose value narrows this one's options
    # (province -> city): see `Option.parents`
    depends_on: Name | None = None

    def fits(self, value: str | None, parent: str | None) -> bool:
        """Whether `value` may be chosen while `depends_on` holds `parent`
        (a blank on either side narrows nothing)."""
        if self.depends_on is None or value is None or parent is None:
            return True
        option = next((o for o in self.options if o.value == value), None)
        return option is None or not option.parents or parent in option.parents


class MultiPicklistField(FieldBase):
    type: Literal["multi_picklist"]
    options: Annotated[list[Option], Field(min_length=1)]


class LookupField(FieldBase):
    type: Literal["lookup"]
    to: Name
    on_delete: Literal["restrict", "set_null", "cascade"] = "restrict"


class RelatedToField(FieldBase):
    type: Literal["related_to"]
    to: Annotated[list[Name], Field(min_length=1)]


class Criterion(Strict):
    name: Name | None = None
    check: Expression
    message: LocalizedText | None = None
    field: Name | None = None


class Stage(Strict):
    value: Name
    label: LocalizedText | None = None
    category: Literal["open", "won", "lost"] = "open"
    probability: Annotated[int, Field(ge=0, le=100)] | None = None
    guidance: LocalizedText | None = None
    color: Color | None = None
    required_fields: list[Name] = []
    exit_criteria: list[Criterion] = []
    entry_criteria: list[Criterion] = []


class StageField(FieldBase):
    type: Literal["stage"]
    stages: Annotated[list[Stage], Field(min_length=2)]
    allow_backward: bool = True


FormulaReturns = Literal["text", "integer", "decimal", "currency", "percent", "boolean", "date", "datetime"]


class FormulaField(FieldBase):
    type: Literal["formula"]
    expression: Expression
    returns: FormulaReturns
    scale: Annotated[int, Field(ge=0, le=18)] | None = None


class RollupField(FieldBase):
    type: Literal["rollup"]
    from_: Name = Field(alias="from")
    via: Name
    function: Literal["count", "sum", "min", "max", "avg"]
    field: Name | None = None
    filter: Expression | None = None


class AutoNumberField(FieldBase):
    type: Literal["auto_number"]
    prefix: Annotated[str, StringConstraints(max_length=20)] = ""
    digits: Annotated[int, Field(ge=1, le=18)] = 6


class UserField(FieldBase):
    type: Literal["user"]


FieldDef = Annotated[
    Union[
        TextField, LongTextField, IntegerField, DecimalField, CurrencyField, PercentField,
        BooleanField, DateField, DateTimeField, EmailField, PhoneField, UrlField,
        PicklistField, MultiPicklistField, LookupField, RelatedToField, StageField,
        FormulaField, RollupField, AutoNumberField, UserField,
    ],
    Field(discriminator="type"),
]

FIELD_TYPES: tuple[str, ...] = (
    "text", "long_text", "integer", "decimal", "currency", "percent", "boolean", "date",
    "datetime", "email", "phone", "url", "picklist", "multi_picklist", "lookup", "related_to",
    "stage", "formula", "rollup", "auto_number", "user",
)


# --- object-level rules and layouts -------------------------------------------

class ValidationRule(Strict):
    name: Name
    check: Expression
    when: Expression | None = None
    message: LocalizedText
    field: Name | None = None
    active: bool = True


class DuplicateRule(Strict):
    name: Name
    fields: Annotated[list[Name], Field(min_length=1)]
    action: Literal["block", "warn"] = "block"
    message: LocalizedText | None = None


class FormSection(Strict):
    label: LocalizedText | None = None
    columns: Annotated[int, Field(ge=1, le=4)] = 2
    fields: Annotated[list[Name], Field(min_length=1)]


SortSpec = Annotated[str, StringConstraints(pattern=r"^-?[a-z][a-z0-9_]*(,-?[a-z][a-z0-9_]*)*$(?!\n)")]


class ListLayout(Strict):
    columns: Annotated[list[Name], Field(min_length=1)]
    sort: SortSpec | None = None


class KanbanLayout(Strict):
    group_by: Name
    card: list[Name] = []
    sum: Name | None = None


class Layouts(Strict):
    form: list[FormSection] = []
    list_: ListLayout | None = Field(default=None, alias="list")
    kanban: KanbanLayout | None = None


class ConversionTarget(Strict):
    """One record a conversion makes (or links): from the source's values
    by `fields`, linked to the targets before it by `links`."""

    object: Name
    link: Name                                  # the source's lookup that keeps it
    fields: dict[Name, Name] = {}               # its field <- the source's field
    links: dict[Name, Name] = {}                # its lookup <- the object of an earlier target
    values: dict[Name, FixedValue] = {}          # set as given (an opportunity's first stage)
    back: Name | None = None                    # its lookup to the source record
    optional: bool = False                      # the user may leave it out (an opportunity)
    existing: bool = False                      # may be a record that exists (found by its duplicate rules)


class Conversion(Strict):
    """Turning a record (a qualified lead) into others in one step: the
    targets in order, the values that mark the source converted, and the
    target its activities and tasks (related-to children) move to."""

    label: LocalizedText | None = None
    targets: Annotated[list[ConversionTarget], Field(min_length=1)]
    mark: dict[Name, FixedValue] = {}
    move_to: Name | None = None


UserPath = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,62}(\.[a-z][a-z0-9_]{0,62})?$(?!\n)")]


class SlaTarget(Strict):
    """The time allowed when `when` holds (the first target that holds wins)."""

    when: Expression | None = None
    minutes: Annotated[int, Field(ge=1, le=525600)]


class Sla(Strict):
    """A service-level clock on each record (a first response, a resolution).

    It starts when `start` holds (none: when the record is created), does
    not run while `pause` holds (waiting on the customer), and stops when
    `stop` holds (it runs on if `stop` stops holding: a reopened ticket).
    The time allowed is that of the first of `targets` that holds, counted
    in the working time of `calendar` (none: around the clock). The owner is
    warned `warn_before` minutes of working time before the due time; on a
    breach the owner and `escalate_to` (a user field, or a lookup's user
    field such as `queue.manager`) are told and `breached_field` is set."""

    name: Name
    label: LocalizedText | None = None
    calendar: Name | None = None
    start: Expression | None = None
    stop: Expression
    pause: Expression | None = None
    targets: Annotated[list[SlaTarget], Field(min_length=1)]
    warn_before: Annotated[int, Field(ge=1, le=525600)] | None = None
    due_field: Name | None = None          # a datetime field: when the clock runs out (blank while paused)
    breached_field: Name | None = None     # a boolean field
    escalate_to: UserPath | None = None


class Suggestion(Strict):
    """Records of a searchable object offered on this object's record page,
    found by full-text search for the text of `from` (a ticket's subject
    finds knowledge-base articles), those `filter` allows."""

    object: Name
    from_: Name = Field(alias="from")
    filter: Expression | None = None
    label: LocalizedText | None = None
    limit: Annotated[int, Field(ge=1, le=20)] = 5


class ObjectDef(Strict):
    name: Name
    uid: Uid | None = None
    label: LocalizedText | None = None
    plural_label: LocalizedText | None = None
    description: LocalizedText | None = None
    icon: Annotated[str, StringConstraints(pattern=r"^[a-z0-9-]{1,40}$(?!\n)")] | None = None
    title_field: Name | None = None
    fields: Annotated[list[FieldDef], Field(min_length=1)]
    validation_rules: list[ValidationRule] = []
    duplicate_rules: list[DuplicateRule] = []
    layouts: Layouts = Layouts()
    track_history: list[Name] = []
    indexes: list[Annotated[list[Name], Field(min_length=1)]] = []
    conversion: Conversion | None = None
    slas: list[Sla] = []
    # text fields searched by full-text search (words, and Chinese by character pairs)
    search: list[Name] = []
    suggest: Suggestion | None = None

    def field(self, name: str) -> FieldDef | None:
        return next((f for f in self.fields if f.name == name), None)



class ObjectExtension(Strict):
    """What a bundle adds to an object of a bundle it requires
    (`extensions/<object>.json`, named after the object): fields, validation
    rules and form sections, appended to the object and owned by the adding
    bundle (its install, upgrade and uninstall touch only them)."""

    name: Name
    fields: list[FieldDef] = []
    validation_rules: list[ValidationRule] = []
    form: list[FormSection] = []


def extended(obj: ObjectDef, extension: ObjectExtension) -> ObjectDef:
    """`obj` with `extension` appended."""
    layouts = obj.layouts.model_copy(update={"form": [*obj.layouts.form, *extension.form]})
    return obj.model_copy(update={"fields": [*obj.fields, *extension.fields], "layouts": layouts,
                                  "validation_rules": [*obj.validation_rules, *extension.validation_rules]})

# --- workflows (SPEC §3.5) -----------------------------------------------------

Offset = Annotated[str, StringConstraints(pattern=r"^[+-]?\d+[mhdw]$(?!\n)")]
Cron = Annotated[str, StringConstraints(pattern=r"^\S+(\s+\S+){4}$(?!\n)")]


class Trigger(Strict):
    on: Literal["create", "update", "delete", "restore", "stage_change", "schedule", "time"]
    fields: list[Name] = []
    to: list[Name] | Name | None = None
    cron: Cron | None = None
    field: Name | None = None
    offset: Offset | None = None


class UpdateAction(Strict):
    type: Literal["update"]
    values: Annotated[dict[Name, Expression], Field(min_length=1)]


class CreateAction(Strict):
    type: Literal["create"]
    object: Name
    values: Annotated[dict[Name, Expression], Field(min_length=1)]


class AssignAction(Strict):
    type: Literal["assign"]
    strategy: Literal["round_robin", "load_balanced", "by_field"]
    users: list[Annotated[str, StringConstraints(min_length=1, max_length=150)]] = []
    field: Name | None = None
    mapping: dict[str, str] = {}
    # load_balanced: the records that count as a member's load (default: all they own)
    load_filter: Expression | None = None
    # the name of a department whose active users are members too, e.g. the
    # ticket's queue's team (`queue.team`): each department takes its own turns
    team: Expression | None = None


class RouteAction(Strict):
    """Point the lookup `field` at the first record of its object that
    matches: `match` maps fields of the record (a ticket's category) to
    fields of the target (a queue's categories, a picklist or multi
    picklist; blank takes every value). Targets in `order` (default: title)."""

    type: Literal["route"]
    field: Name
    match: Annotated[dict[Name, Name], Field(min_length=1)]
    order: SortSpec | None = None


class EmailAction(Strict):
    type: Literal["email"]
    to: Expression
    subject: LocalizedText
    body: LocalizedText


class WebhookAction(Strict):
    type: Literal["webhook"]
    url: Annotated[str, StringConstraints(pattern=r"^https?://\S+$(?!\n)")]
    method: Literal["POST", "PUT", "PATCH"] = "POST"
    values: dict[str, Expression] = {}


class NotifyAction(Strict):
    type: Literal["notify"]
    to: Expression
    message: LocalizedText


Action = Annotated[
    Union[UpdateAction, CreateAction, AssignAction, RouteAction, EmailAction, WebhookAction, NotifyAction],
    Field(discriminator="type"),
]


Source = Literal["form", "api", "import", "automation"]


class Workflow(Strict):
    name: Name
    label: LocalizedText | None = None
    description: LocalizedText | None = None
    object: Name
    active: bool = True
    # the writers whose events fire the workflow (default: all four)
    sources: Annotated[list[Source], Field(min_length=1)] = ["form", "api", "import", "automation"]
    # the user name its actions write as (default: Loom's automation user, with every right)
    run_as: Annotated[str, StringConstraints(min_length=1, max_length=150)] | None = None
    trigger: Trigger
    condition: Expression | None = None
    actions: Annotated[list[Action], Field(min_length=1)]


# --- reports (SPEC §3.7) --------------------------------------------------------

FieldPathName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,62}(\.[a-z][a-z0-9_]{0,62}){0,3}$(?!\n)")]


class GroupBy(Strict):
    field: FieldPathName
    by: Literal["day", "week", "month", "quarter", "year"] | None = None


class Measure(Strict):
    name: Name
    label: LocalizedText | None = None
    function: Literal["count", "sum", "avg", "min", "max", "count_distinct"]
    field: FieldPathName | None = None
    # sum only: each row's value is multiplied by this expression first
    weight: Expression | None = None


class Chart(Strict):
    type: Literal["table", "bar", "line", "pie", "funnel", "number"]
    x: str | None = None
    # the measure drawn (default: every measure; pie, funnel, number: the first)
    y: str | None = None
    # a group whose values become the series (a pivot table's columns)
    series: str | None = None


# a column of the result, descending with a leading "-"
SortKey = Annotated[str, StringConstraints(pattern=r"^-?[a-z][a-z0-9_.:]{0,200}$(?!\n)")]
# who may run a report or open a dashboard besides admins and its creator
Audience = Union[Literal["everyone"], list[Name]]


class Report(Strict):
    name: Name
    label: LocalizedText | None = None
    description: LocalizedText | None = None
    object: Name
    filter: Expression | None = None
    group_by: list[FieldPathName | GroupBy] = []
    measures: Annotated[list[Measure], Field(min_length=1)]
    # result columns (a group's or a measure's name); groups ascending by default
    sort: list[SortKey] = []
    # top-N: only the first `limit` groups after sorting
    limit: Annotated[int, Field(ge=1, le=10000)] | None = None
    chart: Chart | None = None
    # the date a dashboard's date range narrows; default the first date
    # group, else created_at
    date_field: FieldPathName | None = None
    shared_with: Audience = "everyone"
    created_by: str | None = None


class Widget(Strict):
    report: Name
    title: LocalizedText | None = None
    # of a 12-column grid
    width: Annotated[int, Field(ge=1, le=12)] = 6


class Dashboard(Strict):
    name: Name
    label: LocalizedText | None = None
    description: LocalizedText | None = None
    widgets: Annotated[list[Widget], Field(min_length=1)]
    # roles whose home page this dashboard is
    home_of: list[Name] = []
    shared_with: Audience = "everyone"
    created_by: str | None = None


# --- lead pools (公海) -------------------------------------------------------------

class PoolRecycle(Strict):
    """Back to the pool when `field` (a date or timestamp: the last
    follow-up, the last win) is older than `after_days`, or blank and the
    record was claimed that long ago; only records where `filter` holds."""

    field: Name
    after_days: Annotated[int, Field(ge=1, le=3650)]
    filter: Expression | None = None


class ReturnReason(Strict):
    value: Name
    label: LocalizedText | None = None


class Pool(Strict):
    """A pool of ownerless records of one object that members claim, return
    with a reason, and that take back what its members leave untouched."""

    name: Name
    label: LocalizedText | None = None
    description: LocalizedText | None = None
    object: Name
    # who may claim: users of these roles or in these departments (and
    # below); nobody listed: every user who may read the object
    member_roles: list[Name] = []
    member_departments: list[Name] = []
    # who may assign from it and see everything in it (admins always)
    admin_roles: list[Name] = []
    claims_per_day: Annotated[int, Field(ge=1, le=100000)] | None = None
    # records claimed from the pool and still held, per user
    max_held: Annotated[int, Field(ge=1, le=1000000)] | None = None
    # a user cannot claim again for this long what they returned
    reclaim_ban_days: Annotated[int, Field(ge=0, le=3650)] = 0
    # a claimed record is not recycled for this long ...
    protect_days: Annotated[int, Field(ge=0, le=3650)] = 0
    # ... and is recycled this long after its claim, follow-ups or not
    max_hold_days: Annotated[int, Field(ge=1, le=3650)] | None = None
    recycle: list[PoolRecycle] = []
    # owners are told this many days before a record goes back
    remind_days_before: Annotated[int, Field(ge=1, le=365)] | None = None
    return_reasons: list[ReturnReason] = []
    # the previous owner's notes: not shown in the pool's list
    private_fields: list[Name] = []


# --- business calendars (SLA clocks) ------------------------------------------------------

TimeRange = Annotated[str, StringConstraints(pattern=r"^([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-4]):[0-5]\d$(?!\n)")]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
OFFICE_HOURS = ["09:00-12:00", "13:00-18:00"]


class BusinessCalendar(Strict):
    """Working time, which SLA clocks count: the hours of each weekday
    (`"09:00-12:00"`, in the calendar's time zone), public holidays off,
    and the weekend days worked instead (调休) with `workday_hours`."""

    name: Name
    label: LocalizedText | None = None
    timezone: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None   # none: LOOM_TIMEZONE
    hours: dict[Weekday, list[TimeRange]] = {day: OFFICE_HOURS for day in ("mon", "tue", "wed", "thu", "fri")}
    holidays: list[date] = []
    workdays: list[date] = []
    workday_hours: list[TimeRange] = OFFICE_HOURS


# --- satisfaction surveys and public web forms ----------------------------------------

class SurveyQuestion(Strict):
    """One question; the answer is stored in `field` of the record: `csat`
    (1-5) and `nps` (0-10) in an integer field, `text` in a text field."""

    field: Name
    kind: Literal["csat", "nps", "text"]
    label: LocalizedText | None = None
    required: bool = True


class Survey(Strict):
    """A survey e-mailed once per record, when a save makes `when` true (a
    ticket closed), to the address `to` gives; answered on a public page
    through a signed link that works once, until `expires_days` pass."""

    name: Name
    label: LocalizedText | None = None
    object: Name
    when: Expression
    to: Expression
    questions: Annotated[list[SurveyQuestion], Field(min_length=1, max_length=10)]
    expires_days: Annotated[int, Field(ge=1, le=365)] = 14
    subject: LocalizedText
    message: LocalizedText | None = None
    thanks: LocalizedText | None = None


class WebForm(Strict):
    """A public form creating records of `object` (web-to-lead, web-to-case):
    the `fields` visitors fill, `values` set as given (the channel), a
    honeypot and at most `per_hour` posts from one address."""

    name: Name
    label: LocalizedText | None = None
    object: Name
    fields: Annotated[list[Name], Field(min_length=1, max_length=30)]
    values: dict[Name, FixedValue] = {}
    intro: LocalizedText | None = None
    thanks: LocalizedText | None = None
    per_hour: Annotated[int, Field(ge=1, le=10000)] = 20
    active: bool = True


# --- approval processes (审批流) -------------------------------------------------------

class Approvers(Strict):
    """Who approves a step: named users, every user of some roles, and the
    submitter's manager `manager` levels up (1: the manager of their
    department, or of the one above it when they manage it themselves)."""

    users: list[Annotated[str, StringConstraints(min_length=1, max_length=150)]] = []
    roles: list[Name] = []
    manager: Annotated[int, Field(ge=1, le=10)] | None = None


class ApprovalStep(Strict):
    name: Name
    label: LocalizedText | None = None
    approvers: Approvers
    # any: the first decision settles the step (或签); all: every approver approves (会签)
    mode: Literal["any", "all"] = "any"
    # the step is skipped when this is false for the record
    when: Expression | None = None
    # after this long without a decision: the approvers are reminded and,
    # with `escalate`, each one's manager is added as an approver
    timeout_hours: Annotated[int, Field(ge=1, le=8760)] | None = None
    escalate: bool = False


class ApprovalProcess(Strict):
    """An approval process on one object's records: entered when `entry`
    holds (on a submit, or on any save when `auto_submit` holds), its steps
    in order, the fields it locks while pending, and the values it sets."""

    name: Name
    label: LocalizedText | None = None
    description: LocalizedText | None = None
    object: Name
    entry: Expression | None = None
    # a save that makes this true submits the record (a workflow's update, a stage move)
    auto_submit: Expression | None = None
    # changeable only by the step's approvers while pending (none listed: every field)
    locked_fields: list[Name] = []
    steps: Annotated[list[ApprovalStep], Field(min_length=1)]
    on_submit: dict[Name, FixedValue] = {}
    on_approve: dict[Name, FixedValue] = {}
    on_reject: dict[Name, FixedValue] = {}
    # recalled by the submitter, or sent back to them
    on_recall: dict[Name, FixedValue] = {}


# --- roles (SPEC §3.6) ----------------------------------------------------------

RecordScope = Literal["none", "own", "department", "subordinates", "all"]
FieldRight = Literal["edit", "read", "hidden"]
FieldPath = Annotated[str, StringConstraints(pattern=r"^(?!.*__)[a-z][a-z0-9_]{0,62}\.(?!.*__)[a-z][a-z0-9_]{0,62}$(?!\n)")]
BUILT_IN_ROLES = ("admin", "user")


class ObjectRights(Strict):
    """What a role may do with one object's records: scopes over the
    record's owner (own, in the user's department, in it or below, all)."""

    create: bool = False
    read: RecordScope = "none"
    update: RecordScope = "none"
    delete: RecordScope = "none"
    export: bool = False


class SharingRule(Strict):
    """Records of `object` whose owner is in department `owned_in` (or below
    it) are shared with the role's users, beyond their scopes."""

    object: Name
    owned_in: Name
    access: Literal["read", "edit"] = "read"


class Role(Strict):
    name: Name
    label: LocalizedText | None = None
    description: LocalizedText | None = None
    # an object the role does not list is `none` throughout
    objects: dict[Name, ObjectRights] = {}
    # "object.field": edit (the default), read or hidden
    fields: dict[FieldPath, FieldRight] = {}
    sharing: list[SharingRule] = []


# --- the bundle ------------------------------------------------------------------

class BundleManifest(Strict):
    """bundle.json"""

    format: Literal["loom/1"]
    name: Name
    version: SemVer
    label: LocalizedText | None = None
    description: LocalizedText | None = None
    requires: dict[Name, VersionRange] = {}


class Bundle(BaseModel):
    """A whole bundle, as read from its folder (not a file of its own)."""

    manifest: BundleManifest
    objects: list[ObjectDef] = []
    workflows: list[Workflow] = []
    roles: list[Role] = []
    reports: list[Report] = []
    dashboards: list[Dashboard] = []
    pools: list[Pool] = []
    approvals: list[ApprovalProcess] = []
    calendars: list[BusinessCalendar] = []
    extensions: list[ObjectExtension] = []
    surveys: list[Survey] = []
    web_forms: list[WebForm] = []
    data_files: list[str] = []

    def object(self, name: str) -> ObjectDef | None:
        return next((o for o in self.objects if o.name == name), None)


def as_json(model: BaseModel) -> dict[str, Any]:
    """The model as bundle JSON: aliases (`from`), defaults left out."""
    return model.model_dump(mode="json", by_alias=True, exclude_defaults=True)
