"""Business rules in the save path (SPEC §3.2–3.4).

Order of execution of one save: coerce -> defaults and `default_expr` (on
create) -> formulas -> `required` / `required_if` -> `read_only_if` ->
validation rules (`when`, then `check`) -> stage criteria and
`required_fields` -> duplicate rules -> write (one transaction with history
and outbox) -> rollups on parents and formulas that read the record through
lookups. All problems of one save come back together.

- `compiled`: every expression of an object's rules, compiled once per
  metadata version (`rules_for`).
- `engine`: the rules of one save without a database (`SaveRun`).
- `stages`: stage moves (`plan_move`), shared by the API and the board.
- `duplicates`: duplicate rules with normalised matching.
- `hooks`: `Rules`, the record service's hooks (`RuleHooks`), and
  `skip_rules` for admin imports.
"""

from .compiled import RuleSet, rules_for
from .engine import SaveRun, error, formula_value
from .stages import MovePlan, plan_move

__all__ = ["MovePlan", "RuleSet", "SaveRun", "error", "formula_value", "plan_move", "rules_for"]
