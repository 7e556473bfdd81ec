"""Declarative workflow policies (policies/*.toml): which workitems an availability change concerns,
which instances enter a UPS Input Information Sequence, when the inputs are complete, what a downgrade
does, and templates that create workitems when a study becomes available.

Pure: no database, no pynetdicom, no clock, no I/O except `load_policies` reading the files. The
readiness service gathers facts (what IANs and MPPS said about a study, what a workitem lists, the
time), calls `evaluate_readiness` and `readiness_change`, checks templates, and writes what they
return. One module per job:

- `model`: a policy as values (selector, input rules, the condition tree); `templates`: templates and
  their condition checks; `policy_set`: a loaded set, which policy governs a workitem;
- `facts`: what is known of a study and a workitem; `modalities`: the modality a SOP Class implies;
- `evaluation`: readiness and inputs from a policy and facts;
- `schema`: the file format (pydantic); `loading`: files -> PolicySet or PolicyError (`problems`);
- `describe`: a set in words for the conformance statement.

The file format is documented key by key in policies/README.md.
"""

from workflow.readiness.rules.policy.describe import describe
from workflow.readiness.rules.policy.evaluation import (Choices, Evaluation, Input, ReadinessChange, evaluate_readiness,
                                                        readiness_change)
from workflow.readiness.rules.policy.facts import CanonicalInstances, Facts, InstanceFacts, Location, StudyFacts, WorkitemFacts
from workflow.readiness.rules.policy.loading import load_policies, loads_policies, policy_files
from workflow.readiness.rules.policy.model import (AllOf, AnyOf, Code, Condition, ExpectedCount,
                                                   ExpectedSetAvailable, ExpectedSetKnown, InputRules,
                                                   ListedInstancesAvailable, OnDowngrade, Policy, Priority,
                                                   Readiness, Selector, Settled)
from workflow.readiness.rules.policy.policy_set import PolicySet
from workflow.readiness.rules.policy.problems import PolicyError, PolicyProblem
from workflow.readiness.rules.policy.templates import ConditionCheck, Template, TemplateConditions, WorkitemSpec

__all__ = [
    "AllOf", "AnyOf", "CanonicalInstances", "Choices", "Code", "Condition", "ConditionCheck", "Evaluation", "ExpectedCount", "ExpectedSetAvailable",
    "ExpectedSetKnown", "Facts", "Input", "InputRules", "InstanceFacts", "ListedInstancesAvailable", "Location",
    "OnDowngrade", "Policy", "PolicyError", "PolicyProblem", "PolicySet", "Priority", "Readiness",
    "ReadinessChange", "Selector", "Settled", "StudyFacts", "Template", "TemplateConditions", "WorkitemFacts",
    "WorkitemSpec", "describe", "evaluate_readiness", "load_policies", "loads_policies", "policy_files",
    "readiness_change",
]
