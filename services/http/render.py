"""Install files and kernel command lines from Jinja2 templates, in a sandbox, into a buffer.

Templates live in ``http.templates_dir`` and render in a :class:`SandboxedEnvironment` with
:class:`StrictUndefined`: a missing variable is an error, not an empty string. A template is
rendered to a complete string before anything is sent, so a failure is a clear 500 and an
``http.render_error`` event, never half a kickstart.

Which template serves which URL (``profile.template`` overrides the default name; for cloud-init
it names the directory holding ``user-data.j2``, ``meta-data.j2`` and ``vendor-data.j2``):

================  =============  ===========================
URL file          profile.install  default template
================  =============  ===========================
``ks.cfg``        kickstart      ``kickstart.ks.j2``
``preseed.cfg``   preseed        ``preseed.cfg.j2``
``user-data``     cloud-init     ``cloud-init/user-data.j2``
``meta-data``     cloud-init     ``cloud-init/meta-data.j2``
``vendor-data``   cloud-init     ``cloud-init/vendor-data.j2``
================  =============  ===========================
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from shared.bootcmdline import TemplateFailed
from shared.bootcontext import template_context
from shared.records import Host, Profile, Subnet

INSTALL_FILES = {
    # URL name: (profile.install value, default template, template-kind label for metrics)
    "ks.cfg": ("kickstart", "kickstart.ks.j2", "kickstart"),
    "preseed.cfg": ("preseed", "preseed.cfg.j2", "preseed"),
    "user-data": ("cloud-init", "user-data.j2", "user-data"),
    "meta-data": ("cloud-init", "meta-data.j2", "meta-data"),
    "vendor-data": ("cloud-init", "vendor-data.j2", "vendor-data"),
}
CLOUD_INIT_DIR = "cloud-init"


# A template that failed; ``template`` names it and ``reason`` says why, for operators (the log
# and events), never for the public answer.
RenderError = TemplateFailed


def template_for(profile: Profile, filename: str) -> str | None:
    """The template name serving ``filename`` for this profile, or None if the profile's
    ``install`` kind does not provide that file."""
    install, default, _label = INSTALL_FILES[filename]
    if profile.install != install:
        return None
    if install == "cloud-init":
        return f"{(profile.template or CLOUD_INIT_DIR).rstrip('/')}/{default}"
    return profile.template or default


def build_context(mac: str, host: Host | None, profile: Profile | None, subnet: Subnet | None,
                  base_url: str, token: str | None, *, server_ip: str = "",
                  url_token: str | None = None) -> dict[str, Any]:
    """The variables an install file's template sees (documented in docs/http.md).

    ``token`` is the host's token (always present in install files, for the done callback);
    ``url_token`` is the token to put in the other install URLs (None unless
    ``http.token_in_scripts``). Boot scripts use shared/bootcontext.py's context, without secrets.
    """
    return template_context(mac, host, profile, subnet, base_url, url_token=url_token,
                            done_token=token, server_ip=server_ip)


class Renderer:
    """Renders templates from one directory; tracks its changes for the render caches."""

    def __init__(self, templates_dir: str | os.PathLike) -> None:
        self.root = Path(templates_dir)
        self.env = SandboxedEnvironment(
            loader=jinja2.FileSystemLoader(str(self.root)), undefined=jinja2.StrictUndefined,
            autoescape=False, keep_trailing_newline=True, auto_reload=True)
        self._generation = (0, 0)
        self._checked = 0.0

    def generation(self) -> tuple[int, int]:
        """Changes whenever a template file changes (checked at most once a second)."""
        now = time.monotonic()
        if now - self._checked >= 1.0:
            self._checked = now
            newest, count = 0, 0
            for dirpath, _dirs, files in os.walk(self.root):
                for name in files:
                    try:
                        newest = max(newest, os.stat(os.path.join(dirpath, name)).st_mtime_ns)
                        count += 1
                    except OSError:
                        continue
            self._generation = (newest, count)
        return self._generation

    def render_file(self, name: str, context: dict[str, Any]) -> str:
        try:
            template = self.env.get_template(name)
            return template.render(context)
        except jinja2.TemplateNotFound as exc:
            raise RenderError(name, f"not found in {self.root} ({exc.name})") from None
        except jinja2.TemplateSyntaxError as exc:
            raise RenderError(name, f"syntax error at {exc.filename or name} line {exc.lineno}: "
                                    f"{exc.message}") from None
        except Exception as exc:  # noqa: BLE001 - any failure of a user template is a render error
            raise RenderError(name, f"{type(exc).__name__}: {exc}") from None
