"""Kubernetes' own rules for the names, keys, values and paths a spec renders into objects.

Ported from the API server's validation (k8s.io/apimachinery pkg/util/validation and
pkg/api/validate/content, k8s.io/kubernetes pkg/apis/core/validation, v1.36) so that a
spec shipyard accepts is one the server accepts. Each check returns the problem as
"must be <rule>" text (None when the value is fine); `Checked` turns a check into a
pydantic field type whose error names the bad value and the rule.

Where shipyard is stricter than the server it says so: environment variable names use
the classic rule (the server has accepted any printable ASCII but '=' since 1.34; a
name a shell cannot use is a mistake), mount and host paths must be absolute, and a
Service name (the experiment's) must be a DNS-1035 label as older servers require (v1.36,
the dev cluster's, takes any DNS-1123 label, e.g. '1exp'). Quantities stay within int64,
which the scheduler and kubelet count in; the server itself takes larger ones.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Mapping
from typing import Annotated, Any

from pydantic import AfterValidator, Field
from pydantic.json_schema import JsonDict

from shipyard.spec.inputs import short

_LABEL = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1123_LABEL_PATTERN = re.compile(f"^{_LABEL}$")
DNS1123_SUBDOMAIN_PATTERN = re.compile(rf"^{_LABEL}(\.{_LABEL})*$")
DNS1035_PATTERN = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_NAME_PART = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")

LABEL_MAX = 63
SUBDOMAIN_MAX = 253
TOTAL_ANNOTATION_BYTES = 256 * 1024  # apimachinery TotalAnnotationSizeLimitB
MAX_ID = 2**31 - 1  # a Unix user or group id (IsValidUserID / IsValidGroupID)

DNS1123_LABEL_RULE = (
    "a DNS-1123 label: lowercase letters, digits and '-', starting and ending with a letter "
    "or digit, at most 63 characters"
)
DNS1123_SUBDOMAIN_RULE = (
    "a DNS-1123 subdomain: lowercase letters, digits, '-' and '.', each dot-separated part "
    "starting and ending with a letter or digit, at most 253 characters"
)
DNS1035_LABEL_RULE = (
    "a DNS-1035 label: lowercase letters, digits and '-', starting with a letter and ending "
    "with a letter or digit, at most 63 characters"
)
QUALIFIED_NAME_RULE = (
    "a qualified name: an optional DNS-1123 subdomain prefix and '/', then a name of at most "
    "63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit "
    "(e.g. 'example.com/my-key')"
)
LABEL_VALUE_RULE = (
    "a label value: empty, or at most 63 letters, digits, '-', '_' or '.', starting and ending "
    "with a letter or digit"
)
ENV_NAME_RULE = (
    "an environment variable name: letters, digits, '_', '-' or '.', not starting with a digit, "
    "and not '.', '..' or starting with '..'"
)
CONFIG_KEY_RULE = (
    "a Secret or ConfigMap key: letters, digits, '-', '_' or '.', at most 253 characters, not "
    "'.', '..' or starting with '..'"
)
EXTENDED_RESOURCE_RULE = (
    "an extended resource name: a qualified name with a domain prefix outside kubernetes.io, "
    "e.g. 'rdma/hca' or 'vpc.amazonaws.com/efa'"
)


def _fail(rule: str, value: object) -> str:
    return f"must be {rule}, got {short(value)}"


def dns1123_label(value: str) -> str | None:
    ok = len(value) <= LABEL_MAX and DNS1123_LABEL_PATTERN.match(value)
    return None if ok else _fail(DNS1123_LABEL_RULE, value)


def dns1123_subdomain(value: str) -> str | None:
    ok = len(value) <= SUBDOMAIN_MAX and DNS1123_SUBDOMAIN_PATTERN.match(value)
    return None if ok else _fail(DNS1123_SUBDOMAIN_RULE, value)


def dns1035_label(value: str) -> str | None:
    ok = len(value) <= LABEL_MAX and DNS1035_PATTERN.match(value)
    return None if ok else _fail(DNS1035_LABEL_RULE, value)


def _is_qualified(value: str) -> bool:
    parts = value.split("/")
    if len(parts) > 2:
        return False
    if len(parts) == 2 and not (parts[0] and len(parts[0]) <= SUBDOMAIN_MAX
                                and DNS1123_SUBDOMAIN_PATTERN.match(parts[0])):
        return False
    name = parts[-1]
    return 0 < len(name) <= LABEL_MAX and bool(_NAME_PART.match(name))


def qualified_name(value: str) -> str | None:
    """Label keys, taint keys, resource names (content.IsLabelKey)."""
    return None if _is_qualified(value) else _fail(QUALIFIED_NAME_RULE, value)


def label_value(value: str) -> str | None:
    ok = value == "" or (len(value) <= LABEL_MAX and _NAME_PART.match(value))
    return None if ok else _fail(LABEL_VALUE_RULE, value)


def annotation_key(value: str) -> str | None:
    # The server lowercases annotation keys before checking them.
    return None if _is_qualified(value.lower()) else _fail(QUALIFIED_NAME_RULE, value)


def annotations_size(annotations: Mapping[str, str]) -> str | None:
    total = sum(len(k) + len(v) for k, v in annotations.items())
    if total <= TOTAL_ANNOTATION_BYTES:
        return None
    return f"must be at most {TOTAL_ANNOTATION_BYTES:,} bytes of keys and values in all, got {total:,}"


def _chdir_prefix(value: str) -> bool:
    return value in (".", "..") or value.startswith("..")


def env_name(value: str) -> str | None:
    ok = _ENV_NAME.match(value) and not _chdir_prefix(value)
    return None if ok else _fail(ENV_NAME_RULE, value)


def config_key(value: str) -> str | None:
    ok = len(value) <= SUBDOMAIN_MAX and _CONFIG_KEY.match(value) and not _chdir_prefix(value)
    return None if ok else _fail(CONFIG_KEY_RULE, value)


def extended_resource(value: str) -> str | None:
    """helper.IsExtendedResourceName, as a container's requests and limits need it."""
    ok = (
        "/" in value and "kubernetes.io/" not in value and not value.startswith("requests.")
        and _is_qualified(value) and _is_qualified("requests." + value)
    )
    return None if ok else _fail(EXTENDED_RESOURCE_RULE, value)


def _no_backsteps(value: str) -> bool:
    return ".." not in value.split("/")


def absolute_path(value: str) -> str | None:
    """A mount or host path: absolute, no '..' element, no ':' (the runtime's separator)."""
    ok = (posixpath.isabs(value) and _no_backsteps(value) and ":" not in value
          and "\0" not in value and value.strip() == value)
    rule = "an absolute path without '..' elements, ':' or NUL bytes, e.g. /data"
    return None if ok else _fail(rule, value)


def relative_path(value: str) -> str | None:
    """A sub_path: relative and descending only (validateLocalDescendingPath)."""
    ok = value and not posixpath.isabs(value) and _no_backsteps(value) and "\0" not in value
    return None if ok else _fail("a relative path without '..' elements, e.g. imagenet/train", value)


def host_name(value: str) -> str | None:
    ok = 0 < len(value) <= SUBDOMAIN_MAX and not any(c.isspace() for c in value)
    return None if ok else _fail("a host name or IP address without spaces", value)


def image_name(value: str) -> str | None:
    ok = value and value.strip() == value
    return None if ok else _fail("an image reference without leading or trailing spaces", value)


def _raising(check: Callable[[str], str | None]) -> Callable[[str], str]:
    def validate(value: str) -> str:
        problem = check(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    return validate


def checked(check: Callable[[str], str | None], max_length: int | None = None,
            pattern: re.Pattern[str] | None = None) -> Any:
    """A str field type validated by `check` (its message is the error). `max_length` is
    enforced (a field may lower it); `pattern` only tells the CRD's schema, so that the
    API server refuses the same objects the client does."""
    extra: JsonDict | None = {"pattern": pattern.pattern} if pattern is not None else None
    return Annotated[str, Field(max_length=max_length), AfterValidator(_raising(check)),
                     Field(json_schema_extra=extra)]


Dns1123Label = checked(dns1123_label, LABEL_MAX, DNS1123_LABEL_PATTERN)
Dns1123Subdomain = checked(dns1123_subdomain, SUBDOMAIN_MAX, DNS1123_SUBDOMAIN_PATTERN)
Dns1035Label = checked(dns1035_label, LABEL_MAX, DNS1035_PATTERN)
QualifiedName = checked(qualified_name)
LabelValue = checked(label_value, LABEL_MAX)
EnvName = checked(env_name)
ConfigKey = checked(config_key, SUBDOMAIN_MAX)
AbsolutePath = checked(absolute_path)
RelativePath = checked(relative_path)
HostName = checked(host_name)
ImageName = checked(image_name)
