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
import urllib.parse
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from services.http.policy import install_urls, merged_vars
from shared.schema import Host, Profile, Subnet, plain

INSTALL_FILES = {
    # URL name: (profile.install value, default template, template-kind label for metrics)
    "ks.cfg": ("kickstart", "kickstart.ks.j2", "kickstart"),
    "preseed.cfg": ("preseed", "preseed.cfg.j2", "preseed"),
    "user-data": ("cloud-init", "user-data.j2", "user-data"),
    "meta-data": ("cloud-init", "meta-data.j2", "meta-data"),
    "vendor-data": ("cloud-init", "vendor-data.j2", "vendor-data"),
}
CLOUD_INIT_DIR = "cloud-init"


class RenderError(Exception):
    """A template that failed; ``template`` names it and ``str()`` says why, for operators."""

    def __init__(self, template: str, reason: str) -> None:
        super().__init__(f"template {template}: {reason}")
        self.template = template
        self.reason = reason


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
    """The variables every template sees (documented in docs/http.md).

    ``token`` is the host's token (always present in install files, for the done callback);
    ``url_token`` is the token to put in the other install URLs (None unless
    ``http.token_in_scripts``).
    """
    urls = install_urls(base_url, mac, url_token)
    urls["done"] = install_urls(base_url, mac, token)["done"]
    urls.update(base=base_url, images=f"{base_url}/images", mirror=f"{base_url}/mirror")
    host_d = plain(host) or {"mac": mac}
    subnet_d = plain(subnet) or None
    if subnet is not None:
        subnet_d["netmask"] = str(subnet.network.netmask)
        subnet_d["prefixlen"] = subnet.network.prefixlen
    return {
        "mac": mac,
        "host": host_d,
        "profile": plain(profile),
        "subnet": subnet_d,
        "vars": dict(merged_vars(host, profile)),
        "urls": urls,
        "done_url": urls["done"],
        "token": token,
        "server": {"url": base_url, "ip": server_ip,
                   "host": urllib.parse.urlsplit(base_url).netloc},
    }


class Renderer:
    """Renders templates from one directory; tracks its changes for the render caches."""

    def __init__(self, templates_dir: str | os.PathLike) -> None:
        self.root = Path(templates_dir)
        self.env = SandboxedEnvironment(
            loader=jinja2.FileSystemLoader(str(self.root)), undefined=jinja2.StrictUndefined,
            autoescape=False, keep_trailing_newline=True, auto_reload=True)
        self._inline: dict[str, jinja2.Template] = {}
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

    def render_string(self, label: str, source: str, context: dict[str, Any]) -> str:
        """Render a small inline template (a profile's ``cmdline``)."""
        try:
            template = self._inline.get(source)
            if template is None:
                if len(self._inline) > 1024:
                    self._inline.clear()
                template = self._inline[source] = self.env.from_string(source)
            return template.render(context)
        except jinja2.TemplateSyntaxError as exc:
            raise RenderError(label, f"syntax error: {exc.message}") from None
        except Exception as exc:  # noqa: BLE001
            raise RenderError(label, f"{type(exc).__name__}: {exc}") from None
