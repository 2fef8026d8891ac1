"""The object validation a real kube-apiserver does before it stores anything.

Without these checks the emulator stored objects that a cluster answers with 422 (a
Service named ``1st-serving``, a 64-character label value, an annotation that outgrew
256 KiB, a Job whose name cannot be copied into its pod labels), so the operator's tests
passed where a real cluster would fail. Each rule cites the Kubernetes source (1.30-1.34)
it follows; the messages are the real ones (``field.Error.ErrorBody``), because clients and
people read them.

One function per rule; :func:`validate_object` runs those that apply to a kind and raises
one ``422 Invalid`` with every cause, as ``apierrors.NewInvalid`` does. Selector parsing
(``?labelSelector=``) lives in ``selectors.py``, patch content types in ``patching.py``.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from .errors import ApiError
from .resources import ResourceDef

Cause = dict[str, str]
NameRule = Callable[[str], list[str]]

# --------------------------------------------------------------------------- formats
# staging/src/k8s.io/apimachinery/pkg/util/validation/validation.go (the Is* helpers and
# their messages, built by MaxLenError and RegexError there).

_DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN_FMT = rf"{_DNS1123_LABEL_FMT}(\.{_DNS1123_LABEL_FMT})*"
_DNS1035_LABEL_FMT = "[a-z]([-a-z0-9]*[a-z0-9])?"
_QUALIFIED_NAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_VALUE_FMT = f"({_QUALIFIED_NAME_FMT})?"

_DNS1123_LABEL_RE = re.compile(f"^{_DNS1123_LABEL_FMT}$")
_DNS1123_SUBDOMAIN_RE = re.compile(f"^{_DNS1123_SUBDOMAIN_FMT}$")
_DNS1035_LABEL_RE = re.compile(f"^{_DNS1035_LABEL_FMT}$")
_QUALIFIED_NAME_RE = re.compile(f"^{_QUALIFIED_NAME_FMT}$")
_LABEL_VALUE_RE = re.compile(f"^{_LABEL_VALUE_FMT}$")

DNS1123_LABEL_MAX = 63
DNS1123_SUBDOMAIN_MAX = 253
DNS1035_LABEL_MAX = 63
QUALIFIED_NAME_MAX = 63
LABEL_VALUE_MAX = 63
# staging/src/k8s.io/apimachinery/pkg/api/validation/objectmeta.go TotalAnnotationSizeLimitB.
TOTAL_ANNOTATION_SIZE_LIMIT = 256 * 1024
# pkg/apis/core/types.go MaxSecretSize, which ValidateConfigMap also uses.
MAX_CONFIG_MAP_SIZE = 1024 * 1024


def _max_len(length: int) -> str:
    """validation.go MaxLenError."""
    return f"must be no more than {length} characters"


def _regex_error(message: str, fmt: str, *examples: str) -> str:
    """validation.go RegexError (its "'a',  or 'b', " spacing included)."""
    if not examples:
        return f"{message} (regex used for validation is '{fmt}')"
    shown = " or ".join(f"'{e}', " for e in examples)
    return f"{message} (e.g. {shown}regex used for validation is '{fmt}')"


def is_dns1123_label(value: str) -> list[str]:
    """validation.go IsDNS1123Label: namespaces, pod hostname and subdomain."""
    errs: list[str] = []
    if len(value) > DNS1123_LABEL_MAX:
        errs.append(_max_len(DNS1123_LABEL_MAX))
    if not _DNS1123_LABEL_RE.match(value):
        if _DNS1123_SUBDOMAIN_RE.match(value):
            errs.append("must not contain dots")
        else:
            errs.append(_regex_error(
                "a lowercase RFC 1123 label must consist of lower case alphanumeric characters "
                "or '-', and must start and end with an alphanumeric character",
                _DNS1123_LABEL_FMT, "my-name", "123-abc"))
    return errs


def is_dns1123_subdomain(value: str) -> list[str]:
    """validation.go IsDNS1123Subdomain: the name rule of most kinds."""
    errs: list[str] = []
    if len(value) > DNS1123_SUBDOMAIN_MAX:
        errs.append(_max_len(DNS1123_SUBDOMAIN_MAX))
    if not _DNS1123_SUBDOMAIN_RE.match(value):
        errs.append(_regex_error(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
            "'-' or '.', and must start and end with an alphanumeric character",
            _DNS1123_SUBDOMAIN_FMT, "example.com"))
    return errs


def is_dns1035_label(value: str) -> list[str]:
    """validation.go IsDNS1035Label: Service names (they become DNS names and env vars)."""
    errs: list[str] = []
    if len(value) > DNS1035_LABEL_MAX:
        errs.append(_max_len(DNS1035_LABEL_MAX))
    if not _DNS1035_LABEL_RE.match(value):
        errs.append(_regex_error(
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start "
            "with an alphabetic character, and end with an alphanumeric character",
            _DNS1035_LABEL_FMT, "my-name", "abc-123"))
    return errs


def is_qualified_name(value: str) -> list[str]:
    """validation.go IsQualifiedName: label keys, ``[prefix/]name``."""
    errs: list[str] = []
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errs.append("prefix part must be non-empty")
        else:
            errs.extend(f"prefix part {msg}" for msg in is_dns1123_subdomain(prefix))
    else:
        return [
            "a qualified name " + _regex_error(
                "must consist of alphanumeric characters, '-', '_' or '.', and must start and "
                "end with an alphanumeric character",
                _QUALIFIED_NAME_FMT, "MyName", "my.name", "123-abc")
            + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"]
    if not name:
        errs.append("name part must be non-empty")
    elif len(name) > QUALIFIED_NAME_MAX:
        errs.append("name part " + _max_len(QUALIFIED_NAME_MAX))
    if not _QUALIFIED_NAME_RE.match(name):
        errs.append("name part " + _regex_error(
            "must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
            "with an alphanumeric character",
            _QUALIFIED_NAME_FMT, "MyName", "my.name", "123-abc"))
    return errs


def is_valid_label_value(value: str) -> list[str]:
    """validation.go IsValidLabelValue: at most 63 characters, may be empty."""
    errs: list[str] = []
    if len(value) > LABEL_VALUE_MAX:
        errs.append(_max_len(LABEL_VALUE_MAX))
    if not _LABEL_VALUE_RE.match(value):
        errs.append(_regex_error(
            "a valid label must be an empty string or consist of alphanumeric characters, '-', "
            "'_' or '.', and must start and end with an alphanumeric character",
            _LABEL_VALUE_FMT, "MyValue", "my_value", "12345"))
    return errs


# --------------------------------------------------------------------------- field errors
# staging/src/k8s.io/apimachinery/pkg/util/validation/field/errors.go: a cause carries the
# error type as reason, ErrorBody() as message and the field path.


def _quote(value: Any) -> str:
    """Go's %q for strings (close enough: JSON string syntax), %v for the rest."""
    return json.dumps(value, ensure_ascii=False) if isinstance(value, str) else str(value)


def invalid(field: str, value: Any, detail: str) -> Cause:
    """field.Invalid."""
    return {"reason": "FieldValueInvalid", "field": field,
            "message": f"Invalid value: {_quote(value)}: {detail}"}


def too_long(field: str, max_bytes: int) -> Cause:
    """field.TooLong (the value is left out of the message)."""
    return {"reason": "FieldValueTooLong", "field": field,
            "message": f"Too long: must have at most {max_bytes} bytes"}


def required(field: str, detail: str) -> Cause:
    """field.Required."""
    return {"reason": "FieldValueRequired", "field": field,
            "message": f"Required value: {detail}" if detail else "Required value"}


def forbidden(field: str, detail: str) -> Cause:
    """field.Forbidden."""
    return {"reason": "FieldValueForbidden", "field": field, "message": f"Forbidden: {detail}"}


# --------------------------------------------------------------------------- rule 1: names
# Each kind's Validate<Kind> passes a name function to ValidateObjectMeta
# (staging/src/k8s.io/apimachinery/pkg/api/validation/objectmeta.go). Kinds not listed use
# NameIsDNSSubdomain, as ConfigMap, Secret, Pod, ServiceAccount, Event, PVC, Lease,
# Deployment (pkg/apis/apps/validation ValidateDeploymentName), Job
# (pkg/apis/batch/validation ValidateJob: ValidateReplicationControllerName),
# NetworkPolicy (pkg/apis/networking/validation ValidateNetworkPolicyName) and custom
# resources (staging/src/k8s.io/apiextensions-apiserver/pkg/registry/customresource/
# validator.go customResourceValidator.Validate) do.
NAME_RULES: Mapping[str, NameRule] = {
    # pkg/apis/core/validation/validation.go: ValidateServiceName = NameIsDNS1035Label.
    "Service": is_dns1035_label,
    # apimachinery/pkg/api/validation/generic.go: ValidateNamespaceName = NameIsDNSLabel.
    "Namespace": is_dns1123_label,
}


def validate_name(kind: str, name: str) -> list[Cause]:
    """Rule 1: ``metadata.name`` must fit the kind's name rule (``NAME_RULES``)."""
    rule = NAME_RULES.get(kind, is_dns1123_subdomain)
    return [invalid("metadata.name", name, msg) for msg in rule(name)]


def job_pod_template(job: Mapping[str, Any]) -> dict[str, Any]:
    """Rule 1 for Jobs: the pod template as the API server validates it.

    pkg/registry/batch/job/strategy.go (PrepareForCreate → generateSelector) adds the Job's
    name to the template as the ``batch.kubernetes.io/job-name`` and ``job-name`` label
    values (unless set, or ``manualSelector``) before validation, so a name of more than 63
    characters fails as ``spec.template.labels``, never as ``metadata.name``. The emulator
    validates that view but stores the template as sent (its job runner adds the labels to
    the pods itself).
    """
    spec = job.get("spec") or {}
    template = dict(spec.get("template") or {})
    if spec.get("manualSelector"):
        return template
    meta = dict(template.get("metadata") or {})
    labels = dict(meta.get("labels") or {})
    name = str((job.get("metadata") or {}).get("name") or "")
    for key in ("batch.kubernetes.io/job-name", "job-name"):
        labels.setdefault(key, name)
    meta["labels"] = labels
    template["metadata"] = meta
    return template


def validate_indexed_job_name(job: Mapping[str, Any]) -> list[Cause]:
    """Rule 1 for Indexed Jobs: pkg/apis/batch/validation/validation.go ValidateJob rejects
    a name whose last pod hostname ``<name>-<completions-1>`` is not a DNS-1123 label."""
    spec = job.get("spec") or {}
    completions = spec.get("completions")
    if spec.get("completionMode") != "Indexed" or not isinstance(completions, int) \
            or completions <= 0:
        return []
    name = str((job.get("metadata") or {}).get("name") or "")
    hostname = f"{name}-{completions - 1}"
    if not is_dns1123_label(hostname):
        return []
    return [invalid("metadata.name", name,
                    f"will not able to create pod with invalid DNS label: {hostname}")]


# --------------------------------------------------------------------------- rule 2: labels


def validate_labels(labels: Any, field: str) -> list[Cause]:
    """Rule 2: staging/src/k8s.io/apimachinery/pkg/apis/meta/v1/validation/validation.go
    ValidateLabels: every key a qualified name, every value a label value; the cause
    names the whole map (``metadata.labels``), not the key."""
    if not isinstance(labels, Mapping):
        return []
    causes: list[Cause] = []
    for key, value in labels.items():
        causes.extend(invalid(field, key, msg) for msg in is_qualified_name(str(key)))
        if isinstance(value, str):
            causes.extend(invalid(field, value, msg) for msg in is_valid_label_value(value))
    return causes


def validate_label_selector(selector: Any, field: str) -> list[Cause]:
    """Rule 2 for selectors: meta/v1/validation/validation.go ValidateLabelSelector and
    ValidateLabelSelectorRequirement (matchLabels like labels; matchExpressions keys,
    operators and values)."""
    if not isinstance(selector, Mapping):
        return []
    causes = validate_labels(selector.get("matchLabels"), f"{field}.matchLabels")
    for i, expr in enumerate(selector.get("matchExpressions") or []):
        if not isinstance(expr, Mapping):
            continue
        path = f"{field}.matchExpressions[{i}]"
        values = expr.get("values") or []
        operator = expr.get("operator")
        if operator in ("In", "NotIn"):
            if not values:
                causes.append(required(f"{path}.values",
                                       "must be specified when `operator` is 'In' or 'NotIn'"))
        elif operator in ("Exists", "DoesNotExist"):
            if values:
                causes.append(forbidden(
                    f"{path}.values",
                    "may not be specified when `operator` is 'Exists' or 'DoesNotExist'"))
        else:
            causes.append(invalid(f"{path}.operator", operator or "",
                                  "not a valid selector operator"))
        key = str(expr.get("key") or "")
        causes.extend(invalid(f"{path}.key", key, msg) for msg in is_qualified_name(key))
        for j, value in enumerate(values):
            if isinstance(value, str):
                causes.extend(invalid(f"{path}.values[{j}]", value, msg)
                              for msg in is_valid_label_value(value))
    return causes


# --------------------------------------------------------------------------- rule 4: annotations


def validate_annotations(annotations: Any, field: str) -> list[Cause]:
    """Rule 4: objectmeta.go ValidateAnnotations: keys are qualified names (case aside)
    and keys plus values total at most 256 KiB (ValidateAnnotationsSize counts bytes).

    Custom resources get it too (customResourceValidator.Validate calls
    ValidateObjectMetaAccessor): kopf keeps ``kopf.zalando.org/last-handled-configuration``
    there, a copy of the whole spec.
    """
    if not isinstance(annotations, Mapping):
        return []
    causes: list[Cause] = []
    total = 0
    for key, value in annotations.items():
        key = str(key)
        causes.extend(invalid(field, key, msg) for msg in is_qualified_name(key.lower()))
        total += len(key.encode()) + len(str(value if value is not None else "").encode())
    if total > TOTAL_ANNOTATION_SIZE_LIMIT:
        causes.append(too_long(field, TOTAL_ANNOTATION_SIZE_LIMIT))
    return causes


def validate_object_meta(meta: Mapping[str, Any], field: str = "metadata") -> list[Cause]:
    """objectmeta.go validateObjectMetaAccessorWithOptsCommon: labels, then annotations."""
    return (validate_labels(meta.get("labels"), f"{field}.labels")
            + validate_annotations(meta.get("annotations"), f"{field}.annotations"))


# --------------------------------------------------------------------------- rule 5: ConfigMap size


def validate_config_map_size(cm: Mapping[str, Any]) -> list[Cause]:
    """Rule 5: pkg/apis/core/validation/validation.go ValidateConfigMap: ``data`` and
    ``binaryData`` together (bytes, binaryData decoded) at most core.MaxSecretSize.

    The real cause has an empty field path (``field.NewPath("")``), printed as ``[]``.
    """
    total = 0
    for value in (cm.get("data") or {}).values():
        total += len(str(value).encode())
    for value in (cm.get("binaryData") or {}).values():
        try:
            total += len(base64.b64decode(str(value), validate=True))
        except (binascii.Error, ValueError):
            total += len(str(value)) * 3 // 4
    if total > MAX_CONFIG_MAP_SIZE:
        return [too_long("[]", MAX_CONFIG_MAP_SIZE)]
    return []


# --------------------------------------------------------------------------- rule 6: pod hostname


def validate_pod_spec_names(spec: Any, field: str) -> list[Cause]:
    """Rule 6: validation.go ValidatePodSpec: a set ``hostname`` and ``subdomain`` must
    each be a DNS-1123 label (at most 63 characters; they form the pod's DNS name)."""
    if not isinstance(spec, Mapping):
        return []
    causes: list[Cause] = []
    for key in ("hostname", "subdomain"):
        value = spec.get(key)
        if isinstance(value, str) and value:
            causes.extend(invalid(f"{field}.{key}", value, msg)
                          for msg in is_dns1123_label(value))
    return causes


def validate_pod_template(template: Any, field: str) -> list[Cause]:
    """validation.go ValidatePodTemplateSpec: the template's labels and annotations (paths
    ``<field>.labels``, without ``metadata``), then its pod spec."""
    if not isinstance(template, Mapping):
        return []
    meta = template.get("metadata") or {}
    return (validate_labels(meta.get("labels"), f"{field}.labels")
            + validate_annotations(meta.get("annotations"), f"{field}.annotations")
            + validate_pod_spec_names(template.get("spec"), f"{field}.spec"))


# --------------------------------------------------------------------------- per kind


def _spec_causes(kind: str, obj: Mapping[str, Any]) -> list[Cause]:
    """The kind-specific part, in the order the real Validate<Kind> runs it."""
    spec = obj.get("spec")
    spec = spec if isinstance(spec, Mapping) else {}
    if kind == "ConfigMap":
        return validate_config_map_size(obj)
    if kind == "Pod":
        return validate_pod_spec_names(spec, "spec")
    if kind == "Service":
        # validation.go ValidateService: spec.selector is a plain label map.
        return validate_labels(spec.get("selector"), "spec.selector")
    if kind == "Job":
        # pkg/apis/batch/validation ValidateJob: ValidateJobSpec (selector, then the
        # template with the generated labels), then the Indexed hostname check.
        return (validate_label_selector(spec.get("selector"), "spec.selector")
                + validate_pod_template(job_pod_template(obj), "spec.template")
                + validate_indexed_job_name(obj))
    if kind == "Deployment":
        # pkg/apis/apps/validation ValidateDeploymentSpec.
        return (validate_label_selector(spec.get("selector"), "spec.selector")
                + validate_pod_template(spec.get("template"), "spec.template"))
    if kind == "NetworkPolicy":
        # pkg/apis/networking/validation ValidateNetworkPolicySpec / ValidateNetworkPolicyPeer.
        causes = validate_label_selector(spec.get("podSelector"), "spec.podSelector")
        for direction, peers in (("ingress", "from"), ("egress", "to")):
            for i, rule in enumerate(spec.get(direction) or []):
                for j, peer in enumerate((rule or {}).get(peers) or []):
                    path = f"spec.{direction}[{i}].{peers}[{j}]"
                    for key in ("podSelector", "namespaceSelector"):
                        causes += validate_label_selector((peer or {}).get(key),
                                                          f"{path}.{key}")
        return causes
    return []


def validate_object(res: ResourceDef, obj: Mapping[str, Any], *, creating: bool) -> None:
    """Run every rule that applies to ``res`` on ``obj``; raise one 422 with all causes.

    ``creating`` adds the name rules (a name cannot change afterwards, and
    ValidateObjectMetaUpdate does not re-check it). Hooked into ``Store.create`` and
    ``Store._commit``, so POST, PUT, every PATCH type (results included) and the
    emulator's own writes (the job runner's pods) all go through it.
    """
    meta = obj.get("metadata")
    meta = meta if isinstance(meta, Mapping) else {}
    name = str(meta.get("name") or "")
    causes: list[Cause] = []
    if creating:
        causes += validate_name(res.kind, name)
    causes += validate_object_meta(meta)
    if not res.is_custom:
        causes += _spec_causes(res.kind, obj)
    if causes:
        raise ApiError.invalid(res.kind, res.group, name, causes)
