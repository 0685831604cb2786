"""``tenure completion bash|zsh``: print a shell completion script.

    tenure completion bash > ~/.local/share/bash-completion/completions/tenure
    tenure completion zsh > ~/.zfunc/_tenure      # a directory in $fpath
    source <(tenure completion bash)               # this shell only

The script is generated from the same argparse parsers that parse the command line, so
it lists exactly the commands, options and choices ``tenure`` accepts. It completes
subcommands, options, the choices of options and arguments that have them, file names
for FILE/PATH values, and after ``tenure run ... --`` the command to run. It does not
call Python while completing (a TAB costs nothing) and knows nothing the parser does
not: backend URLs and election names are not completed.

Hand-written rather than a library: shtab would fit, but one more runtime dependency
for about a hundred lines was not worth it, and argcomplete runs Python (importing
every backend's parser) at each TAB.
"""

from __future__ import annotations

import argparse
import shlex
from dataclasses import dataclass, field

SHELLS = ("bash", "zsh")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "completion", help="print a shell completion script (bash or zsh)",
        description="Prints a completion script for SHELL on stdout. Bash: save it as "
        "~/.local/share/bash-completion/completions/tenure, or run "
        "'source <(tenure completion bash)'. Zsh: save it as _tenure in a directory of "
        "$fpath (then run compinit), or run 'source <(tenure completion zsh)' after "
        "compinit.",
    )
    parser.add_argument("shell", choices=SHELLS, metavar="SHELL", help="bash or zsh")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from tenure.cli.main import build_parser

    nodes = walk(build_parser())
    print(bash_script(nodes) if args.shell == "bash" else zsh_script(nodes), end="")
    return 0


@dataclass
class Node:
    """What can follow one command path ("tenure", "tenure migrate status")."""

    subcommands: list[str] = field(default_factory=list)
    options: list[str] = field(default_factory=list)
    values: dict[str, str] = field(default_factory=dict)
    """option -> what its value is: "file", "free" or "choices A B C"."""
    positional_choices: list[str] = field(default_factory=list)
    remainder: bool = False
    """A ``--`` ends the options and starts a command line (``tenure run``)."""


def walk(parser: argparse.ArgumentParser, path: str = "tenure") -> dict[str, Node]:
    """Every command path of ``parser`` and what may follow it."""
    node = Node()
    nodes = {path: node}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                node.subcommands.append(name)
                nodes.update(walk(sub, f"{path} {name}"))
        elif action.help == argparse.SUPPRESS:
            continue
        elif action.option_strings:
            node.options += action.option_strings
            if action.nargs != 0:
                for option in action.option_strings:
                    node.values[option] = _value_kind(action)
        elif action.nargs == argparse.REMAINDER:
            node.remainder = True
        elif action.choices:
            node.positional_choices += [str(choice) for choice in action.choices]
    return nodes


def _value_kind(action: argparse.Action) -> str:
    if action.choices:
        return "choices " + " ".join(str(choice) for choice in action.choices)
    metavar = str(action.metavar or "")
    return "file" if metavar.startswith("FILE") or metavar == "PATH" else "free"


def _cases(table: dict[str, str], indent: str) -> str:
    lines = [f"{indent}{shlex.quote(key)}) echo {shlex.quote(value)} ;;"
             for key, value in table.items() if value]
    return "\n".join(lines)


def _helpers(nodes: dict[str, Node]) -> str:
    """POSIX-shell functions (valid in bash and zsh) answering from the parser's data."""
    subcommands = {path: " ".join(node.subcommands) for path, node in nodes.items()}
    options = {path: " ".join(node.options) for path, node in nodes.items()}
    values = {f"{path} {option}": kind for path, node in nodes.items()
              for option, kind in node.values.items()}
    positional = {path: " ".join(node.positional_choices) for path, node in nodes.items()}
    remainder = {path: "yes" for path, node in nodes.items() if node.remainder}
    parts = []
    for name, table in (("subcommands", subcommands), ("options", options),
                        ("value", values), ("positional", positional),
                        ("remainder", remainder)):
        parts.append(f'_tenure_{name}() {{\n    case "$*" in\n{_cases(table, "        ")}\n'
                     "    esac\n}\n")
    parts.append('''# Sets cmdpath (e.g. "tenure migrate status") and expect (the kind of value
# the word being completed is, after an option that takes one) from the words before
# it; sets after_dashes to the index of the word after "--" of a command that runs one.
_tenure_scan() {
    local word kind i=$1 end=$2
    cmdpath=tenure expect= after_dashes=
    while (( i < end )); do
        word=$(_tenure_word "$i")
        if [[ -n $expect ]]; then
            expect=
        elif [[ $word == -- && -n $(_tenure_remainder "$cmdpath") ]]; then
            after_dashes=$(( i + 1 ))
            return
        elif [[ $word == -* && $word != *=* ]]; then
            expect=$(_tenure_value "$cmdpath" "$word")
        elif [[ " $(_tenure_subcommands "$cmdpath") " == *" $word "* ]]; then
            cmdpath="$cmdpath $word"
        fi
        (( i++ ))
    done
}
''')
    return "\n".join(parts)


def bash_script(nodes: dict[str, Node]) -> str:
    """The bash completion script."""
    return f'''# bash completion for tenure (generated by: tenure completion bash)
{_helpers(nodes)}
_tenure_word() {{ printf '%s' "${{COMP_WORDS[$1]}}"; }}

_tenure() {{
    local cur=${{COMP_WORDS[COMP_CWORD]}} cmdpath expect after_dashes
    _tenure_scan 1 "$COMP_CWORD"
    COMPREPLY=()
    if [[ -n $after_dashes ]]; then
        if (( COMP_CWORD == after_dashes )); then
            COMPREPLY=($(compgen -c -- "$cur"))
        else
            compopt -o default 2>/dev/null
        fi
    elif [[ $expect == file ]]; then
        compopt -o filenames 2>/dev/null
        COMPREPLY=($(compgen -f -- "$cur"))
    elif [[ $expect == choices* ]]; then
        COMPREPLY=($(compgen -W "${{expect#choices }}" -- "$cur"))
    elif [[ -n $expect ]]; then
        :
    elif [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$(_tenure_options "$cmdpath")" -- "$cur"))
    else
        COMPREPLY=($(compgen -W "$(_tenure_subcommands "$cmdpath") \\
$(_tenure_positional "$cmdpath")" -- "$cur"))
    fi
}}

complete -F _tenure tenure
'''


def zsh_script(nodes: dict[str, Node]) -> str:
    """The zsh completion script (an autoloadable ``_tenure``, or sourced after
    compinit)."""
    return f'''#compdef tenure
# zsh completion for tenure (generated by: tenure completion zsh)
{_helpers(nodes)}
_tenure_word() {{ printf '%s' "${{words[$1]}}"; }}

_tenure() {{
    local cmdpath expect after_dashes
    _tenure_scan 2 "$CURRENT"
    if [[ -n $after_dashes ]]; then
        shift $(( after_dashes - 1 )) words
        (( CURRENT -= after_dashes - 1 ))
        _normal
    elif [[ $expect == file ]]; then
        _files
    elif [[ $expect == choices* ]]; then
        compadd -- ${{=expect#choices }}
    elif [[ -n $expect ]]; then
        _message 'value'
    elif [[ ${{words[CURRENT]}} == -* ]]; then
        compadd -- ${{=$(_tenure_options "$cmdpath")}}
    else
        compadd -- ${{=$(_tenure_subcommands "$cmdpath")}} ${{=$(_tenure_positional "$cmdpath")}}
    fi
}}

if [[ ${{zsh_eval_context[-1]}} == loadautofunc ]]; then
    _tenure "$@"
else
    compdef _tenure tenure
fi
'''
