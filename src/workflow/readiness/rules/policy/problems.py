"""What is wrong with a set of policy files: one `PolicyProblem` per key, all of them in one
`PolicyError`, so a file with four typos is fixed in one run."""

from __future__ import annotations

from dataclasses import dataclass

from workflow.config import ConfigError


@dataclass(frozen=True)
class PolicyProblem:
    """One thing wrong in a policy file: the file, the key as a dotted path, and why."""

    file: str
    key: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}: {self.key}: {self.reason}" if self.key else f"{self.file}: {self.reason}"


class PolicyError(ConfigError):
    """The policy files are invalid. `problems` lists every problem found, in file order; `file`, `key`
    (a dotted path such as `policy[2].complete_when.all_of[0].settled`, empty for a TOML syntax error)
    and `reason` are those of the first. The message is one problem a line."""

    def __init__(self, *problems: PolicyProblem) -> None:
        super().__init__(*problems)
        self.problems: tuple[PolicyProblem, ...] = problems
        self.file, self.key, self.reason = problems[0].file, problems[0].key, problems[0].reason
