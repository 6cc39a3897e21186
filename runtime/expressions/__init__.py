"""The expression language of SPEC §4, the running half: evaluation on a
hardened asteval interpreter, and the SQL back end. The checking half
(grammar, functions, types) is `loomcrm.metadata.expressions`."""

from loomcrm.metadata.expressions import ExprError, ExpressionError, Scope

from .compiled import Compiled, Session, compile_expression
from .context import EvalContext, default_context

__all__ = ["Compiled", "EvalContext", "ExprError", "ExpressionError", "Scope", "Session", "compile_expression", "default_context"]
