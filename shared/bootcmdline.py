"""The profile's kernel command line template, rendered in a sandbox (pure: no sockets, no Redis,
no clock).

:func:`check_template` says why a source cannot be a cmdline template (write time, in
shared/fields.py, and render time); :func:`render_cmdline` renders it once for a host, with
the context of shared/bootcontext.py, strict undefined variables and hard limits: no loops,
macros, blocks or ``set``, calls only to a few string methods, a size cap on ``*``/``+``/``**``
results and on the output, and the rendered text checked as every kernel argument is
(shared/scriptvalues.py). A failure is :class:`TemplateFailed`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import jinja2
from jinja2 import nodes
from jinja2.sandbox import SandboxedEnvironment

from shared.bootcontext import template_context
from shared.records import Host, Profile
from shared.scriptvalues import args_problem

if TYPE_CHECKING:
    from shared.bootplan import Facts

MAX_CMDLINE = 2048       # rendered kernel arguments (x86 Linux COMMAND_LINE_SIZE)
MAX_TEMPLATE = 4096      # cmdline template source
MAX_VALUE = 4096         # any intermediate string/list a cmdline template builds
MAX_EXPONENT = 64


class TemplateFailed(Exception):
    """A template failed to render. ``template`` names it (``profile X cmdline``), ``reason``
    says why: both are for the log and events, not for the public answer."""

    def __init__(self, template: str, reason: str) -> None:
        super().__init__(f"template {template}: {reason}")
        self.template = template
        self.reason = reason


# ------------------------------------------------------------------------------ cmdline template

_ALLOWED_FILTERS = frozenset({
    "default", "d", "lower", "upper", "trim", "string", "int", "join", "urlencode", "first",
    "last", "length", "count", "capitalize", "title", "e", "escape"})
_ALLOWED_METHODS = frozenset({"get", "lower", "upper", "strip", "startswith", "endswith"})
_ALLOWED_NODES = (nodes.Template, nodes.Output, nodes.TemplateData, nodes.If,
                  nodes.Name, nodes.Const, nodes.Getattr, nodes.Getitem, nodes.Filter,
                  nodes.Test, nodes.CondExpr, nodes.And, nodes.Or, nodes.Not, nodes.Compare,
                  nodes.Operand, nodes.Concat, nodes.Add, nodes.Sub, nodes.Mul,
                  nodes.Neg, nodes.Pos, nodes.Tuple, nodes.List, nodes.Keyword, nodes.Slice,
                  nodes.Call)


class _BoundedSandbox(SandboxedEnvironment):
    """A sandbox whose ``*``, ``+`` and ``**`` cannot build a value above MAX_VALUE."""

    intercepted_binops = frozenset({"*", "+", "**"})

    def call_binop(self, context, operator, left, right):
        if operator == "**":
            if isinstance(right, (int, float)) and abs(right) > MAX_EXPONENT:
                raise TemplateLimit(f"exponent above {MAX_EXPONENT}")
            return left ** right
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and isinstance(times, int) \
                        and len(seq) * times > MAX_VALUE:
                    raise TemplateLimit(f"a value above {MAX_VALUE} characters")
            return left * right
        if isinstance(left, (str, list, tuple)) and isinstance(right, (str, list, tuple)) \
                and len(left) + len(right) > MAX_VALUE:
            raise TemplateLimit(f"a value above {MAX_VALUE} characters")
        return left + right


class TemplateLimit(Exception):
    """A cmdline template went over a limit."""


_ENV = _BoundedSandbox(undefined=jinja2.StrictUndefined, autoescape=False)
_ENV.globals.clear()  # no range, lipsum, cycler, joiner, namespace, dict
_COMPILED: dict[str, jinja2.Template | str] = {}


def check_template(source: str) -> str | None:
    """Why ``source`` cannot be a cmdline template, or None. The same rules hold at write time
    (shared/fields.py) and at render time."""
    if len(source) > MAX_TEMPLATE:
        return f"longer than {MAX_TEMPLATE} characters"
    try:
        tree = _ENV.parse(source)
    except jinja2.TemplateSyntaxError as exc:
        return f"template syntax error: {exc.message}"
    for node in tree.find_all(nodes.Node):
        if not isinstance(node, _ALLOWED_NODES):
            return (f"'{type(node).__name__}' is not allowed in a kernel command line template "
                    "(no loops, macros, blocks, set, include, % or ** there: use if/else, "
                    "variables and filters)")
        if isinstance(node, nodes.Mul) and any(
                isinstance(side, nodes.Const) and isinstance(side.value, int)
                and not isinstance(side.value, bool) and side.value > MAX_VALUE
                for side in (node.left, node.right)):
            return f"a repetition above {MAX_VALUE} (the command line is at most {MAX_CMDLINE})"
        if isinstance(node, nodes.Filter) and node.name not in _ALLOWED_FILTERS:
            return (f"filter {node.name!r} is not allowed in a kernel command line template "
                    f"(allowed: {', '.join(sorted(_ALLOWED_FILTERS))})")
        if isinstance(node, nodes.Call) and not (
                isinstance(node.node, nodes.Getattr) and node.node.attr in _ALLOWED_METHODS):
            return ("calls are not allowed in a kernel command line template except the methods "
                    f"{', '.join(sorted(_ALLOWED_METHODS))}")
    return None


def _compiled(source: str) -> jinja2.Template | str:
    found = _COMPILED.get(source)
    if found is None:
        if len(_COMPILED) > 1024:
            _COMPILED.clear()
        problem = check_template(source)
        found = problem if problem else _ENV.from_string(source)
        if not problem:
            found.literal = _literal(source)
        _COMPILED[source] = found
    return found


def _literal(source: str) -> str | None:
    """What a template with no Jinja syntax in it (most cmdlines) renders to, so that it needs
    no context; None for any other template."""
    body = _ENV.parse(source).body
    if not body:
        return ""
    if len(body) == 1 and isinstance(body[0], nodes.Output) and len(body[0].nodes) == 1 \
            and isinstance(body[0].nodes[0], nodes.TemplateData):
        return body[0].nodes[0].data
    return None


def render_cmdline(host: Host, profile: Profile, facts: Facts) -> str:
    """The profile's cmdline template for this host, rendered once with the boot-script
    context, within the limits, and checked (:func:`args_problem`)."""
    label = f"profile {profile.name} cmdline"
    compiled = _compiled(profile.cmdline)
    if isinstance(compiled, str):
        raise TemplateFailed(label, compiled)
    context = None if compiled.literal is not None else \
        template_context(host.mac, host, profile, facts.subnet, facts.base_url,
                         url_token=facts.token, done_token=facts.token,
                         server_ip=facts.san_server)
    out: list[str] = []
    size = 0
    try:
        for chunk in compiled.generate(context) if context is not None else (compiled.literal,):
            size += len(chunk)
            if size > MAX_CMDLINE:
                raise TemplateLimit(f"renders to more than {MAX_CMDLINE} characters")
            out.append(chunk)
    except TemplateLimit as exc:
        raise TemplateFailed(label, f"over a limit: {exc}") from None
    except jinja2.UndefinedError as exc:
        hint = (" (boot scripts carry no token or done URL unless http.token_in_scripts is on)"
                if any(s in str(exc) for s in ("token", "done")) else "")
        raise TemplateFailed(label, f"{exc}{hint}") from None
    except Exception as exc:  # noqa: BLE001 - any failure of a user template is a render error
        raise TemplateFailed(label, f"{type(exc).__name__}: {exc}") from None
    text = "".join(out).strip()
    problem = args_problem(text)
    if problem:
        raise TemplateFailed(label, f"the rendered command line has {problem}")
    return text
