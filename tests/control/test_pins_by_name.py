"""Pins inside lists, addressed by a field of the item: `releases[name=cert-manager].version`."""

from __future__ import annotations

import pytest

from bot.control.pins import PinError, pin_diff, read_pin, replace_pin

HELMFILE = """\
repositories:
  - name: jetstack
    url: https://charts.jetstack.io
releases:
  # the controller first
  - name: cert-manager
    namespace: cert-manager
    chart: jetstack/cert-manager
    version: v1.11.0   # keep in step with the CRDs
    values:
      - values/{{ .Environment.Name }}.yaml
  - chart: jetstack/trust-manager
    name: trust-manager
    version: "v0.5.0"
"""


def test_a_release_is_chosen_by_name_and_only_its_version_line_changes() -> None:
    assert read_pin(HELMFILE, "releases[name=cert-manager].version") == "v1.11.0"
    assert read_pin(HELMFILE, "releases[name=trust-manager].version") == "v0.5.0"  # name after
    new = replace_pin(HELMFILE, "releases[name=cert-manager].version", "v1.12.0")
    assert new == HELMFILE.replace("version: v1.11.0", "version: v1.12.0")
    diff = pin_diff("components/cert-manager/helmfile.yaml", HELMFILE, new)
    changed = [ln for ln in diff.splitlines() if ln[:1] in "+-" and ln[:3] not in ("+++", "---")]
    assert changed == [
        "-    version: v1.11.0   # keep in step with the CRDs",
        "+    version: v1.12.0   # keep in step with the CRDs",
    ]
    quoted = replace_pin(HELMFILE, "releases[name=trust-manager].version", "v0.6.0")
    assert 'version: "v0.6.0"' in quoted and "v1.11.0" in quoted


@pytest.mark.parametrize(
    ("key", "error"),
    [
        ("releases[name=kyverno].version", "pin key releases[name=kyverno].version not found"),
        ("releases.version", "pin key releases.version not found"),  # items need a selector
        ("releases[name=cert-manager", "invalid pin key"),
        ("releases[name=cert-manager]x.version", "invalid pin key"),
        ("releases[name=cert-manager].values", "not a scalar"),
    ],
)
def test_bad_or_missing_item_keys_get_one_line(key: str, error: str) -> None:
    with pytest.raises(PinError, match=error.replace("[", r"\[").replace("]", r"\]")):
        replace_pin(HELMFILE, key, "v9.9.9")


def test_two_items_with_the_same_name_are_refused() -> None:
    twice = HELMFILE + "  - name: cert-manager\n    version: v1.0.0\n"
    with pytest.raises(PinError, match="appears 2 times"):
        read_pin(twice, "releases[name=cert-manager].version")
