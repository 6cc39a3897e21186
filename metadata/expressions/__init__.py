"""The expression language of SPEC §4, the checking half: grammar, whitelist,
function signatures and type inference. Evaluation lives in
`loomcrm.runtime.expressions`; this half needs no database, so that
`loom pack validate` can check every rule offline."""

from .checker import Checked, Scope, analyze, check
from .errors import CODES, ExprError, ExpressionError
from .functions import SIGNATURES

__all__ = ["CODES", "Checked", "ExprError", "ExpressionError", "SIGNATURES", "Scope", "analyze", "check"]
