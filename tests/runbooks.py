"""The commands of runbooks/*.md, as an operator pastes them, for the tests that run or parse them.

A fenced block tagged `console`, or `sh`/`bash` with `$ ` prompts, holds commands on its `$ ` lines and
their output on the others (a `console` block without prompts is output only); a `sh`/`bash` block
without prompts is all commands. Trailing backslashes
join lines; a trailing `# comment` is dropped. Untagged blocks are output only.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNBOOKS = ROOT / "runbooks"
_FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>\w*)[ \t]*\n(?P<body>.*?)^(?P=indent)```", re.M | re.S)
_PLACEHOLDER = re.compile(r"<([^<>\n]+)>")


@dataclass
class Command:
    runbook: str  # path below the project root
    line: int  # 1-based line of the command in the runbook
    text: str  # the command as written (continuations joined, comment dropped)
    output: list[str] = field(default_factory=list)  # the lines the runbook shows after it

    def argv(self, values: dict[str, str] | None = None, default: str | None = "1") -> list[str]:
        """The words of the first command of a pipeline (up to `|`, `&&`, ...), placeholders filled."""
        words = shlex.split(fill(self.text, values or {}, default), comments=True)
        for i, word in enumerate(words):
            if word in ("|", "&&", "||", ";", "&"):
                return words[:i]
        return words

    @property
    def program(self) -> str:
        return self.text.split()[0] if self.text.strip() else ""

    def __str__(self) -> str:
        return f"{self.runbook}:{self.line}: {self.text}"


def _strip_comment(text: str) -> str:
    """`cmd  # why` -> `cmd`; a # inside quotes, or inside a word (`$#`, `url#x`), stays."""
    quote = ""
    for i, ch in enumerate(text):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or text[i - 1].isspace()):
            return text[:i].strip()
    return text.strip()


def commands(path: Path) -> list[Command]:
    text = path.read_text()
    found: list[Command] = []
    for m in _FENCE.finditer(text):
        lang = m.group("lang")
        if lang not in ("console", "sh", "bash", "shell"):
            continue
        first_line = text.count("\n", 0, m.start("body")) + 1
        lines = [line[len(m.group("indent")):] if line.startswith(m.group("indent")) else line
                 for line in m.group("body").split("\n")]
        prompted = lang == "console" or any(line.startswith("$ ") for line in lines)
        current: Command | None = None
        i = 0
        while i < len(lines):
            line, number = lines[i], first_line + i
            if (prompted and line.startswith("$ ")) or (not prompted and line.strip() and not line.startswith("#")):
                cmd = line[2:] if prompted else line
                while cmd.rstrip().endswith("\\") and i + 1 < len(lines):
                    i += 1
                    cmd = cmd.rstrip()[:-1] + " " + lines[i].strip()
                current = Command(str(path.relative_to(ROOT)), number, _strip_comment(cmd))
                found.append(current)
            elif current is not None and line.strip():
                current.output.append(line)
            i += 1
    return found


def all_commands() -> list[Command]:
    return [c for path in sorted(RUNBOOKS.rglob("*.md")) for c in commands(path)]


def fill(text: str, values: dict[str, str], default: str | None = None) -> str:
    """Placeholders `<name>` replaced from values (or default); an unknown one without default raises KeyError."""

    def one(m: re.Match[str]) -> str:
        name = m.group(1)
        if name in values:
            return values[name]
        if default is None:
            raise KeyError(f"no value for placeholder <{name}>")
        return default

    return _PLACEHOLDER.sub(one, text)
