"""``bootyard validate``'s dry run of the install files: every installing host's kickstart,
preseed or cloud-init files rendered as the HTTP service renders them (its templates, its
sandbox, its context: services/http/render.py), so that a template needing a variable the host
lacks is an error naming the host, the template and the variable, not an HTTP 500 in the middle
of an install. The kernel command line is checked by shared/inventory.py (the boot plan)."""

from __future__ import annotations

from collections.abc import Mapping

from services.http.render import INSTALL_FILES, Renderer, RenderError, build_context, template_for
from shared import keys
from shared.checks import CHECK_FACTS, parse_dump, subnet_of
from shared.fields import Problem
from shared.groups import resolve


def install_problems(dump: Mapping, templates_dir: str) -> list[Problem]:
    """One error per host and install file that does not render."""
    records, _ = parse_dump(dump)
    renderer = Renderer(templates_dir)
    problems = []
    rendered: set[tuple] = set()
    for mac, host in sorted(records["host"].items()):
        # the effective host, as the HTTP service renders it (its groups, its one-shot boot)
        host = resolve(host, records["group"].values(), records["subnet"]).host
        if host.boot_mode != "install" or not host.profile:
            continue
        profile = records["profile"].get(host.profile)
        if profile is None:
            continue
        subnet = subnet_of(host, records["subnet"])
        context = build_context(mac, host, profile, subnet, CHECK_FACTS.base_url, "TOKEN",
                                server_ip=CHECK_FACTS.san_server)
        for filename in INSTALL_FILES:
            name = template_for(profile, filename)
            if name is None:
                continue
            try:
                renderer.render_file(name, context)
            except RenderError as exc:
                once = (name, exc.reason) if "not found" in exc.reason else None
                if once in rendered:
                    continue
                if once:
                    rendered.add(once)
                problems.append(Problem(keys.object_key("host", mac), "(install file)",
                                        name, f"template {name} does not render for this "
                                        f"host (profile {profile.name}): {exc.reason}"))
    return problems
