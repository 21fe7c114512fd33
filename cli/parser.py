"""The ``bootyard`` command line's grammar: nouns, verbs, options, ``--help`` texts, and the
shell completion built from them (cli/commands.py runs what they parse).

Like cli/commands.py it imports only the standard library at the top: ``bootyard --help``
starts fast (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import time

# CLI noun -> inventory kind. Block exports are "blockexport" because "export" dumps the inventory.
NOUNS = {"host": "host", "profile": "profile", "subnet": "subnet",
         "blockexport": "export", "mirror": "mirror", "netboot": "netboot", "group": "group",
         "image": "image", "discovery-rule": "discovery_rule"}
LIST_COLUMNS = {
    "host": ("hostname", "ip", "profile", "boot_mode", "enabled", "tags"),
    "profile": ("install", "image", "kernel", "root_image", "export"),
    "subnet": ("network", "ranges", "router", "relays"),
    "export": ("kind", "backing", "iqn", "aoe_shelf", "aoe_slot"),
    "mirror": ("source", "path", "interval", "enabled"),
    "netboot": ("index", "title", "boot_file", "root_path", "default", "enabled"),
    "group": ("match", "profile", "kernel_args", "enabled"),
    "image": ("kernel", "initrd", "squashfs", "source_kind", "imported"),
    "discovery_rule": ("priority", "match", "profile", "hostname", "boot_mode", "enabled"),
}
# verb -> the other names people type for it
VERB_ALIASES = {"list": ["ls"], "show": ["get"], "rm": ["delete", "remove"]}


def _positive(text: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive number (1 or more)")
    return value


def _since(text: str) -> float:
    """A Unix time from ``90s``/``10m``/``2h``/``1d`` (ago) or an ISO 8601 time."""
    import re
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smhd])", text.strip())
    if match:
        seconds = float(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
        return time.time() - seconds
    from datetime import datetime
    try:
        return datetime.fromisoformat(text.strip()).timestamp()
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give a duration (90s, 10m, 2h, 1d) or an ISO time "
            "(2026-12-05T16:00)") from None


class _Version(argparse.Action):
    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        from importlib import metadata
        try:
            version = metadata.version("bootyard")
        except metadata.PackageNotFoundError:
            version = "unknown (not installed)"
        print(f"bootyard {version}")
        parser.exit()


def _common() -> argparse.ArgumentParser:
    """Options accepted before or after the command (``bootyard host list --redis-url U``)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--redis-url", default=argparse.SUPPRESS,
                        help="Redis URL (overrides BOOTYARD_REDIS_URL)")
    return common


def _format_options(sub: argparse.ArgumentParser) -> None:
    group = sub.add_mutually_exclusive_group()
    group.add_argument("--json", action="store_const", const="json", dest="format",
                       help="print JSON (the admin API's shape)")
    group.add_argument("--yaml", action="store_const", const="yaml", dest="format",
                       help="print YAML (the same shape)")


def build_parser() -> argparse.ArgumentParser:
    from shared.schema import KINDS

    common = _common()
    parser = argparse.ArgumentParser(
        prog="bootyard", description="Edit bootyard's inventory and read the boot timeline.",
        parents=[common],
        epilog="Redis is found through --redis-url, BOOTYARD_REDIS_URL or the redis section of "
               "BOOTYARD_CONFIG (default redis://127.0.0.1:6379/0).")
    parser.add_argument("--version", action=_Version, help="print the version and exit")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    for noun, kind_name in NOUNS.items():
        kind = KINDS[kind_name]
        id_name = "MAC" if kind_name == "host" else "NAME"
        noun_parser = commands.add_parser(noun, help=f"manage {kind.plural}")
        verbs = noun_parser.add_subparsers(dest="verb", required=True, metavar="VERB")
        sub = verbs.add_parser("add", help=f"create a {noun}", parents=[common])
        sub.add_argument("id", metavar=id_name)
        _add_field_options(sub, kind, "add")
        _write_options(sub)
        sub = verbs.add_parser("set", help=f"change fields of {kind.plural}", parents=[common])
        _selectors(sub, kind, id_name)
        _add_field_options(sub, kind, "set")
        _write_options(sub)
        sub = verbs.add_parser("rm", aliases=VERB_ALIASES["rm"], help=f"delete {kind.plural}",
                               parents=[common])
        sub.set_defaults(verb="rm")
        _selectors(sub, kind, id_name)
        _write_options(sub)
        sub = verbs.add_parser("show", aliases=VERB_ALIASES["show"],
                               help=f"print one {noun} and its problems", parents=[common])
        sub.set_defaults(verb="show")
        sub.add_argument("id", metavar=id_name)
        _format_options(sub)
        _secrets_option(sub, kind)
        if kind_name == "host":
            sub.add_argument("--effective", action="store_true",
                             help="the values the host boots with (its groups, profile and "
                                  "one-shot boot layered) and where each comes from")
        sub = verbs.add_parser("list", aliases=VERB_ALIASES["list"], help=f"list {kind.plural}",
                               parents=[common])
        sub.set_defaults(verb="list")
        _selectors(sub, kind, id_name, required=False)
        _format_options(sub)
        _secrets_option(sub, kind)
        if kind_name == "host":
            from shared.bootstate import STATES
            sub.add_argument("--state", choices=STATES,
                             help="only hosts whose latest boot is in this state (docs/console.md)")
        if kind_name == "export":
            from cli import blockexport
            blockexport.add_verbs(verbs, common)
        if kind_name == "mirror":
            from cli import mirrors
            mirrors.add_verbs(verbs, common, id_name)
        if kind_name == "host":
            from cli import groups
            groups.add_host_verbs(verbs, common,
                                  lambda p, k=kind: _selectors(p, k, "MAC"))
        if kind_name == "image":
            from cli import images
            images.add_verbs(verbs, common, id_name)
        if kind_name == "host":  # host adopt (cli/discovered.py)
            from cli import discovered
            discovered.add_host_verbs(verbs, common)
    from cli import discovered
    discovered.add_parsers(commands, common, _format_options)

    sub = commands.add_parser("export", help="print the whole inventory as YAML",
                              parents=[common])
    sub.add_argument("-o", "--output", help="write to this file instead of stdout")
    sub.add_argument("--show-secrets", action="store_true",
                     help="write secret fields (power_secret) as they are, not as ******** "
                          "(importing ******** keeps a host's secret)")
    sub = commands.add_parser("import", help="load a YAML file made by 'bootyard export', or a "
                              "CSV file of one kind", parents=[common])
    sub.add_argument("file", help="YAML or CSV file, or - for standard input")
    sub.add_argument("--replace", action="store_true",
                     help="also delete objects that are not in the file (Redis matches the "
                          "file); deleting needs --yes")
    sub.add_argument("--yes", action="store_true", help="delete what --replace would delete")
    sub.add_argument("--dry-run", action="store_true",
                     help="print what would be added, changed and deleted; write nothing")
    sub.add_argument("--format", choices=("yaml", "csv"),
                     help="file format (default: csv for *.csv, else yaml)")
    sub.add_argument("--kind", choices=sorted(NOUNS), default="host",
                     help="CSV only: the kind of every row (default host)")
    sub = commands.add_parser("validate", help="check every record, reference and key; exit 1 "
                              "on an error", parents=[common])
    sub.add_argument("--strict", action="store_true", help="exit 1 on warnings too")
    sub.add_argument("--no-templates", action="store_true",
                     help="do not render the install files")
    sub.add_argument("--templates", metavar="DIR",
                     help="also render every host's install file from the templates in DIR "
                          "(default: http.templates_dir of BOOTYARD_CONFIG, else ./templates, "
                          "else the templates shipped with bootyard)")
    sub = commands.add_parser("events", help="print the boot timeline", parents=[common])
    sub.add_argument("--host", metavar="MAC", help="only this host's events")
    sub.add_argument("--mirror", metavar="NAME", help="only this mirror's sync events")
    sub.add_argument("--follow", "-f", action="store_true", help="keep printing new events")
    sub.add_argument("--count", "-n", type=_positive, default=200,
                     help="how many past events (200)")
    sub.add_argument("--since", type=_since, metavar="WHEN",
                     help="only events since then: 90s, 10m, 2h, 1d ago, or an ISO time "
                          "(2026-12-05T16:00)")
    sub.add_argument("--kind", metavar="KIND",
                     help="only events of this kind (dhcp.ack) or kinds (dhcp: dhcp.*)")
    sub.add_argument("--json", action="store_true",
                     help="one JSON object per line (the admin API's event shape)")
    sub = commands.add_parser("history", help="who changed the inventory, when, from what",
                              parents=[common])
    sub.add_argument("--host", metavar="MAC", help="only this host's changes")
    sub.add_argument("--key", help="only this key's changes (bootyard:profile:debian12)")
    sub.add_argument("--count", "-n", type=_positive, default=100,
                     help="how many changes (100)")
    sub.add_argument("--json", action="store_true", help="print JSON")
    sub = commands.add_parser("completion", help="print a shell completion script: "
                              "source <(bootyard completion bash)")
    sub.add_argument("shell", choices=("bash",))
    sub = commands.add_parser("leases", help="list DHCP leases (current ones unless --all)",
                              parents=[common])
    sub.add_argument("--all", action="store_true",
                     help="also expired, released, declined and offered addresses")
    sub.add_argument("--json", action="store_true", help="print JSON")
    _doctor_parser(commands, common)  # runs in cli/doctor.py
    from cli import power
    power.add_parser(commands, common)  # runs in cli/power.py
    return parser


def _secrets_option(sub: argparse.ArgumentParser, kind) -> None:
    if any(spec.secret for spec in kind.fields.values()):
        sub.add_argument("--show-secrets", action="store_true",
                         help="print secret fields (power_secret) instead of ********")


def _doctor_parser(commands, common) -> None:
    sub = commands.add_parser(
        "doctor", parents=[common], help="check what will fail for a host before it boots (or the deploy host)",
        description="With MAC: the inventory, then live DHCP/TFTP/HTTP probes acting as that "
                    "host's firmware (docs/doctor.md). Without: the deploy host's services, "
                    "Redis, interfaces, loaders and images.")
    sub.add_argument("mac", nargs="?", metavar="MAC")
    sub.add_argument("--interface", help="served interface to probe DHCP on (one of "
                                         "dhcp.interfaces; default: the first)")
    sub.add_argument("--no-probe", action="store_true", help="the inventory checks only")
    sub.add_argument("--force", action="store_true",
                     help="probe DHCP even if the host holds a lease now (it is released)")


def _selectors(sub: argparse.ArgumentParser, kind, id_name: str, required: bool = True) -> None:
    sub.add_argument("ids", nargs="*", metavar=id_name,
                     help=f"one or more {id_name}s" + (" (or a selector below)" if required
                                                       else " (default: all)"))
    if kind.name == "host":
        sub.add_argument("--tag", dest="select_tag", metavar="TAG", help="hosts with this tag")
        # on set, --profile is the field to set: the selector is --of-profile there
        sub.add_argument("--of-profile" if required else "--profile", dest="select_profile",
                         metavar="NAME", help="hosts of this profile")
        sub.add_argument("--subnet", dest="select_subnet", metavar="NAME",
                         help="hosts whose fixed address is in this subnet")
        sub.add_argument("--group", dest="select_group", metavar="NAME",
                         help="hosts this group matches (its selectors)")


def _write_options(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--dry-run", action="store_true",
                     help="print what would change; write nothing")
    sub.add_argument("--force", action="store_true",
                     help="write even if the checks find errors (they are printed)")


def _add_field_options(sub: argparse.ArgumentParser, kind, verb: str) -> None:
    for fname, spec in kind.fields.items():
        extra = " (required)" if spec.required and verb == "add" else ""
        sub.add_argument(f"--{fname.replace('_', '-')}", dest=f"field_{fname}", metavar="VALUE",
                         help=spec.doc + extra)
    if kind.has_vars:
        sub.add_argument("--var", action="append", default=[], metavar="KEY=VALUE",
                         help="template variable (repeatable; KEY= removes it)")
    if kind.families:
        from cli import groups
        groups.family_options(sub, kind)
    if verb == "set":
        sub.add_argument("--unset", action="append", default=[], metavar="FIELD",
                         help="remove a field (repeatable)")


def completion_script(parser: argparse.ArgumentParser) -> str:
    """A bash completion function for every command, verb and option of ``parser``."""
    def choices(p: argparse.ArgumentParser) -> tuple[list[str], dict[str, argparse.ArgumentParser]]:
        options = [o for a in p._actions for o in a.option_strings]
        subs: dict[str, argparse.ArgumentParser] = {}
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                subs.update(action.choices)
        return options, subs

    cases = []

    def walk(p: argparse.ArgumentParser, path: str) -> None:
        options, subs = choices(p)
        words = sorted(subs) + sorted(options)
        cases.append(f'        "{path}") words="{" ".join(words)}" ;;')
        for name, sub in subs.items():
            walk(sub, f"{path} {name}".strip())

    walk(parser, "")
    return "\n".join([
        "# bash completion for bootyard: source <(bootyard completion bash)",
        "_bootyard() {",
        '    local cur="${COMP_WORDS[COMP_CWORD]}" path="" i words',
        "    for ((i = 1; i < COMP_CWORD; i++)); do",
        '        case "${COMP_WORDS[i]}" in -*) ;; *) path="${path:+$path }${COMP_WORDS[i]}" ;; esac',
        "    done",
        '    while :; do',
        '        case "$path" in',
        *cases,
        '        *) if [[ "$path" == *" "* ]]; then path="${path% *}"; continue; fi; words="" ;;',
        "        esac",
        "        break",
        "    done",
        '    COMPREPLY=($(compgen -W "$words" -- "$cur"))',
        "}",
        "complete -o default -F _bootyard bootyard",
        ""])
