"""Secret inventory fields (``power_secret``, the iSCSI CHAP secrets): masked wherever a record is shown, exported or
recorded, and kept when the mask is written back (pure).

A field is secret when its :class:`shared.schema.FieldSpec` says ``secret=True``. ``show``,
``list``, ``export``, the admin API and the history show :data:`SECRET_MASK` instead of its
value (``--show-secrets`` on the CLI's ``show``, ``list`` and ``export`` prints it); a write
that gives the mask keeps the object's current value, so an export imported again, or an API
object saved back, keeps its secret (docs/power.md).
"""

from __future__ import annotations

from collections.abc import Mapping

from shared.fields import SECRET_MASK
from shared.schema import Kind, split_key


def secret_fields(kind: Kind) -> tuple[str, ...]:
    return tuple(f for f, spec in kind.fields.items() if spec.secret)


def mask(kind: Kind, raw: Mapping[str, str]) -> dict[str, str]:
    """``raw`` with each secret field's value (if set) replaced by :data:`SECRET_MASK`: what
    show, list, export, the API and the history print."""
    hidden = secret_fields(kind)
    return {f: (SECRET_MASK if f in hidden and v else v) for f, v in raw.items()}


def mask_change(key: str, before: Mapping[str, str], after: Mapping[str, str]
                ) -> tuple[dict[str, str], dict[str, str]]:
    """(before, after) of one object's change with secrets masked; a secret that changed
    shows as ``******** (changed)`` after, so the history tells that it changed."""
    found = split_key(key)
    if found is None:
        return dict(before), dict(after)
    kind = found[0]
    shown_after = mask(kind, after)
    for fname in secret_fields(kind):
        if after.get(fname) and before.get(fname) and before[fname] != after[fname]:
            shown_after[fname] = f"{SECRET_MASK} (changed)"
    return mask(kind, before), shown_after


def keep_secrets(kind: Kind, current: Mapping[str, str], new: Mapping[str, str]
                 ) -> dict[str, str]:
    """``new`` with a secret field given as :data:`SECRET_MASK` (what export and the API
    show) set back to its current value (or removed): re-importing an export, or saving what
    the API returned, keeps the secret."""
    out = dict(new)
    for fname in secret_fields(kind):
        if out.get(fname) == SECRET_MASK:
            if current.get(fname):
                out[fname] = current[fname]
            else:
                out.pop(fname)
    return out

