"""The expression language of SPEC §4, the checking half: grammar, whitelist,
function signatures and type inference. Evaluation lives in
`loomcrm.runtime.expressions`; this half needs no database, so that
`loom pack validate` can check every rule offline."""

from .checker import ExprError, Scope, check

__all__ = ["ExprError", "Scope", "check"]
