"""The chart grants exactly what tests/support/rbac_needs.py lists, nothing more.

Each rule is one need (one API group, one resource), carries the need's `why` as its
comment, and sits where its scope says: a Role per watched namespace, or the ClusterRole.
"""

from __future__ import annotations

import re

import pytest

from tests.support.rbac_needs import OPERATOR_NEEDS, TRAINER_NEEDS, Need

from .scenarios import RELEASE_NAMESPACE, SCENARIOS

Rule = tuple[str, str, frozenset[str]]


def as_rules(needs: list[Need]) -> list[Rule]:
    return sorted((n.api_group, n.resource, frozenset(n.verbs)) for n in needs)


def rules_of(role: dict) -> list[Rule]:
    rules = []
    for rule in role["rules"]:
        assert set(rule) == {"apiGroups", "resources", "verbs"}, f"unexpected keys in {rule}"
        assert len(rule["apiGroups"]) == 1 and len(rule["resources"]) == 1, "one need per rule"
        assert len(set(rule["verbs"])) == len(rule["verbs"]), f"repeated verb in {rule}"
        rules.append((rule["apiGroups"][0], rule["resources"][0], frozenset(rule["verbs"])))
    return sorted(rules)


def needs_in(scopes: set[str], router: str = "gateway") -> list[Rule]:
    """The rules of `scopes`, with those that come with the chart's serving.router."""
    return as_rules([n for n in OPERATOR_NEEDS if n.scope in scopes and n.router in (None, router)])


def test_needs_are_well_formed():
    for need in [*OPERATOR_NEEDS, *TRAINER_NEEDS]:
        assert need.verbs and "*" not in need.verbs and need.resource != "*", need
        assert need.why.strip(), need
    keys = [(n.api_group, n.resource) for n in OPERATOR_NEEDS]
    assert len(keys) == len(set(keys)), "one entry per resource"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_no_wildcards_anywhere(render, scenario):
    for kind in ("ClusterRole", "Role"):
        for role in render(scenario).all(kind):
            for rule in role["rules"]:
                for key in ("apiGroups", "resources", "verbs"):
                    assert "*" not in rule[key], f"{role['metadata']['name']}: {rule}"
                assert "nonResourceURLs" not in rule


def is_trainers(obj: dict) -> bool:
    return obj["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "trainer"


def operator_cluster_role(rendered) -> dict:
    (role,) = [r for r in rendered.all("ClusterRole") if not is_trainers(r)]
    return role


def test_cluster_wide_mode_grants_every_need_in_one_cluster_role(render):
    rendered = render("defaults")
    assert not [r for r in rendered.all("Role") if not is_trainers(r)]
    role = operator_cluster_role(rendered)
    assert rules_of(role) == needs_in({"namespace", "cluster", "all-namespaces"})
    binding = rendered.one("ClusterRoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [operator_subject(rendered)]


def test_the_inference_pool_router_adds_exactly_its_kinds(render):
    role = operator_cluster_role(render("inference-pool"))
    rules = needs_in({"namespace", "cluster", "all-namespaces"}, router="inferencePool")
    assert rules_of(role) == rules
    added = set(rules) - set(needs_in({"namespace", "cluster", "all-namespaces"}))
    assert {(group, resource) for group, resource, _ in added} == {
        ("inference.networking.k8s.io", "inferencepools"),
        ("llm-d.ai", "inferencemodelrewrites"),
    }


def test_namespaced_mode_grants_roles_per_namespace_and_only_crd_reads_cluster_wide(render):
    rendered = render("namespaced")
    assert not [r for r in rendered.all("ClusterRole") if is_trainers(r)]
    assert rules_of(operator_cluster_role(rendered)) == needs_in({"cluster"})
    operator_roles = {
        r["metadata"]["namespace"]: r for r in rendered.all("Role") if not is_trainers(r)
    }
    assert set(operator_roles) == {"team-a", "team-b"}
    for role in operator_roles.values():
        assert rules_of(role) == needs_in({"namespace"})
    bindings = {
        b["metadata"]["namespace"]: b
        for b in rendered.all("RoleBinding")
        if b["roleRef"]["name"] == next(iter(operator_roles.values()))["metadata"]["name"]
    }
    assert set(bindings) == {"team-a", "team-b"}
    for binding in bindings.values():
        assert binding["subjects"] == [operator_subject(rendered)]


def operator_subject(rendered) -> dict:
    return {
        "kind": "ServiceAccount",
        "name": rendered.one("Deployment")["spec"]["template"]["spec"]["serviceAccountName"],
        "namespace": RELEASE_NAMESPACE,
    }


@pytest.mark.parametrize(
    "scenario, namespaces, name",
    [
        ("namespaced", {"team-a", "team-b"}, "mtd-trainer"),
        ("cluster-wide-trainer-namespaces", {"ml", "ml-staging"}, "multitask-trainer"),
        ("defaults", set(), "multitask-trainer"),
    ],
)
def test_trainer_account_only_writes_results(render, scenario, namespaces, name):
    rendered = render(scenario)
    accounts = [a for a in rendered.all("ServiceAccount") if a["metadata"]["name"] == name]
    assert {a["metadata"]["namespace"] for a in accounts} == namespaces
    for account in accounts:
        assert account["automountServiceAccountToken"] is True
    namespaced = bool(SCENARIOS[scenario].get("watchNamespaces"))
    roles = [r for r in rendered.all("Role") if is_trainers(r)]
    cluster_roles = [r for r in rendered.all("ClusterRole") if is_trainers(r)]
    if namespaced:
        # One Role per watched namespace holds the rules.
        assert not cluster_roles
        assert {r["metadata"]["namespace"] for r in roles} == namespaces
        assert all(r["metadata"]["name"] == name for r in roles)
        role_ref = {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name}
    else:
        # One ClusterRole holds them, bound per namespace (here and by the NOTES commands).
        assert not roles
        (cluster_role,) = cluster_roles
        roles = [cluster_role]
        role_ref = {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": cluster_role["metadata"]["name"],
        }
    for role in roles:
        assert rules_of(role) == as_rules(TRAINER_NEEDS)
    bindings = [b for b in rendered.all("RoleBinding") if is_trainers(b)]
    assert {b["metadata"]["namespace"] for b in bindings} == namespaces
    for binding in bindings:
        namespace = binding["metadata"]["namespace"]
        assert binding["roleRef"] == role_ref
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": name, "namespace": namespace}
        ]


def test_bring_your_own_renders_no_accounts_or_rbac(render):
    rendered = render("bring-your-own")
    for kind in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"):
        assert not rendered.all(kind), kind
    pod = rendered.one("Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "preapproved"


def rule_comments(text: str) -> dict[Rule, str]:
    """The comment lines right above each `- apiGroups:` line, joined, per rule."""
    comments: dict[Rule, str] = {}
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if not line.lstrip().startswith("- apiGroups:"):
            continue
        above = []
        cursor = index - 1
        while cursor >= 0 and lines[cursor].lstrip().startswith("#"):
            above.insert(0, lines[cursor].strip().lstrip("#").strip())
            cursor -= 1
        group = re.search(r'\["([^"]*)"\]', line).group(1)
        resource = re.search(r'\["([^"]*)"\]', lines[index + 1]).group(1)
        verbs = frozenset(re.findall(r'"([^"]+)"', lines[index + 2]))
        comments[(group, resource, verbs)] = " ".join(above)
    return comments


@pytest.mark.parametrize("scenario", ["defaults", "namespaced", "inference-pool"])
def test_each_rule_is_commented_with_its_why(render, scenario):
    comments = rule_comments(render(scenario).text)
    trainer_needs = TRAINER_NEEDS if scenario == "namespaced" else []  # no trainer Role else
    router = "inferencePool" if scenario == "inference-pool" else "gateway"
    for need in [*OPERATOR_NEEDS, *trainer_needs]:
        key = (need.api_group, need.resource, frozenset(need.verbs))
        if need.scope == "all-namespaces" and scenario == "namespaced":
            continue
        if need.router not in (None, router):
            assert key not in comments, f"{need.resource}: granted without its router"
            continue
        assert comments.get(key) == need.why, f"{need.resource}: comment != rbac_needs why"
