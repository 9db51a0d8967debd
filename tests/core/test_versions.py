"""Chart versions and chat refs: parsing, ordering and resolution against release tags."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.core.versions import (
    RefError,
    Tag,
    Version,
    check_ref,
    newer_than,
    parse_version,
    resolve_ref,
)

V127 = "0.0.127-20240215103245-a1b2c3d4"
V131 = "0.0.131-20240222212602-322f874b"
V132 = "0.0.132-20240223090000-322f9999"
C127 = "a1b2c3d4" + "0" * 32
C131 = "322f874b" + "1" * 32
C132 = "322f9999" + "2" * 32


def _tags() -> list[Tag]:
    return [
        Tag(V131, C131),
        Tag(V127, C127),
        Tag(V132, C132),
        Tag("v1.0", "f" * 40),  # not a release tag: ignored
        Tag("0.0.140-dev-mr-12", "e" * 40),  # dev build names are not releases
    ]


def test_parse_release_version() -> None:
    v = parse_version(V131)
    assert v == Version(raw=V131, n=131, timestamp="20240222212602", sha8="322f874b", mr=None)
    assert v is not None and v.is_release
    assert str(v) == V131


def test_parse_dev_build() -> None:
    v = parse_version("0.0.133-dev-mr-42")
    assert v is not None
    assert (v.n, v.mr, v.timestamp, v.sha8, v.is_release) == (133, 42, None, None, False)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "latest",
        "0.0.131",
        "0.0.131-20240222212602-322F874B",  # uppercase sha
        "0.0.131-2024022221260-322f874b",  # 13-digit timestamp
        "0.0.131-20241322212602-322f874b",  # month 13
        "0.0.131-20240222212602-322f874",  # 7-hex sha
        "0.0.131-20240222212602-322f874b\n",
        " 0.0.131-20240222212602-322f874b",
        "0.0.131-dev-mr-",
        "0.0.131-dev-mr-x",
        "0.0.01-20240222212602-322f874b",
    ],
)
def test_parse_rejects(bad: str) -> None:
    assert parse_version(bad) is None


def test_semver_is_ordered_by_precedence_with_pre_releases_before_their_release() -> None:
    order = ["v1.9.0", "v1.10.0-alpha", "v1.10.0-alpha.1", "v1.10.0-alpha.beta",
             "v1.10.0-beta.2", "v1.10.0-beta.11", "v1.10.0-rc.1", "v1.10.0", "v1.10.1", "v2.0.0"]  # fmt: skip
    parsed = [parse_version(v) for v in order]
    assert all(v is not None and v.is_release for v in parsed)
    keys = [v.sort_key for v in parsed if v is not None]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    odd = parse_version("1.0.131-20240222212602-322f874b")  # semver, not a CI build
    assert odd is not None and odd.timestamp is None and odd.is_prerelease


def test_latest_skips_pre_releases_and_full_semver_refs_resolve() -> None:
    tags = [Tag(v, "") for v in ("v1.11.0", "v1.12.0", "v1.13.0-alpha.1", "not-a-version")]
    assert resolve_ref("latest", tags).raw == "v1.12.0"
    assert resolve_ref("v1.13.0-alpha.1", tags).raw == "v1.13.0-alpha.1"
    with pytest.raises(RefError, match="unknown version v1.14.0; newest is v1.13.0-alpha.1"):
        resolve_ref("v1.14.0", tags)


def _v(s: str) -> Version:
    v = parse_version(s)
    assert v is not None
    return v


def test_ordering_is_numeric_not_lexical() -> None:
    v99 = _v("0.0.99-20240301000000-aaaaaaaa")
    v100 = _v("0.0.100-20240101000000-bbbbbbbb")
    assert v99.raw > v100.raw  # as strings the order would be wrong
    assert v99.sort_key < v100.sort_key


def test_same_n_orders_by_timestamp() -> None:
    early = _v("0.0.50-20240101000000-cccccccc")
    late = _v("0.0.50-20240101000001-cccccccc")
    assert early.sort_key < late.sort_key


def test_dev_build_sorts_before_release_of_same_n() -> None:
    assert _v("0.0.50-dev-mr-3").sort_key < _v("0.0.50-20240101000000-cccccccc").sort_key


@given(
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 10**14 - 1)), min_size=2, max_size=20)
)
def test_sort_key_matches_numeric_order(pairs: list[tuple[int, int]]) -> None:
    def make(n: int, t: int) -> Version | None:
        return parse_version(f"0.0.{n}-{t:014d}-0123abcd")

    versions = [v for n, t in pairs if (v := make(n, t)) is not None]
    ordered = sorted(versions, key=lambda v: v.sort_key)
    assert [(v.n, v.timestamp) for v in ordered] == sorted((v.n, v.timestamp) for v in versions)


# --- check_ref ---------------------------------------------------------------


@pytest.mark.parametrize(
    "ok",
    [V131, "0.0.12-dev-mr-7", "322f874", "322f874b", C131, "latest", "previous", "mr12", "MR12"],
)
def test_check_ref_accepts(ok: str) -> None:
    check_ref(ok)


@pytest.mark.parametrize(
    ("bad", "phrase"),
    [
        ("; rm -rf /", "single word"),
        ("$(id)", "not allowed"),
        ("`id`", "not allowed"),
        ("../x", "'/' or '..'"),
        ("main/x", "'/' or '..'"),
        ("a b", "single word"),
        ("322f874b\nPRIVMSG #x :hi", "control characters"),
        ("322f874b\x00", "control characters"),
        ("x" * 2048, "too long"),
        ("", "empty"),
        ("322", "unknown ref"),  # too short for a sha (git takes 4 or more)
        ("master", "unknown ref"),
        ("mr", "unknown ref"),
        ("mr0", "unknown ref"),
        ("v0.0.131", "unknown ref"),
    ],
)
def test_check_ref_rejects_with_one_clear_line(bad: str, phrase: str) -> None:
    with pytest.raises(RefError) as err:
        check_ref(bad)
    msg = str(err.value)
    assert phrase in msg
    assert "\n" not in msg and "\r" not in msg and "\x00" not in msg
    assert len(msg) < 300


def test_check_ref_does_not_echo_long_input() -> None:
    bad = "$" + "A" * 90
    with pytest.raises(RefError) as err:
        check_ref(bad)
    assert "A" * 61 not in str(err.value)


# --- resolve_ref ---------------------------------------------------------------


def test_resolve_full_version() -> None:
    assert resolve_ref(V127, _tags()).raw == V127


def test_resolve_unknown_full_version_names_newest() -> None:
    with pytest.raises(RefError, match=f"unknown version 0.0.130-.*; newest is {V132}"):
        resolve_ref("0.0.130-20240222000000-deadbeef", _tags())


def test_resolve_unknown_full_version_without_tags() -> None:
    with pytest.raises(RefError, match="no release versions tagged yet"):
        resolve_ref(V131, [])


@pytest.mark.parametrize("prefix", ["a1b2c3d", "a1b2c3d4", "A1B2C3D4", C127[:12], C127])
def test_resolve_sha_prefix(prefix: str) -> None:
    assert resolve_ref(prefix, _tags()).raw == V127


def test_resolve_sha_matches_tag_commit_when_name_differs() -> None:
    # A tag whose commit is not the one its sha8 names (e.g. re-tagged): the commit matches.
    tags = [Tag(V131, "9999aaaa" + "3" * 32)]
    assert resolve_ref("9999aaa", tags).raw == V131
    assert resolve_ref("322f874b", tags).raw == V131


def test_resolve_ambiguous_sha_names_candidates() -> None:
    with pytest.raises(RefError, match="unknown ref"):
        resolve_ref("322", _tags())  # too short: check_ref refuses before any lookup
    with pytest.raises(RefError, match="ambiguous commit 322f: matches 2 versions"):
        resolve_ref("322f", _tags())  # 4 hex digits, as git takes them: two commits
    assert resolve_ref("322f87", _tags()).raw == V131  # a 6-character prefix resolves
    tags = _tags() + [Tag("0.0.133-20240224000000-322f874c", "322f874c" + "4" * 32)]
    with pytest.raises(RefError) as err:
        resolve_ref("322f874", tags)
    msg = str(err.value)
    assert "ambiguous" in msg
    assert V131 in msg and "0.0.133-20240224000000-322f874c" in msg
    assert V132 not in msg


def test_resolve_ambiguity_lists_at_most_five() -> None:
    tags = [
        Tag(f"0.0.{n}-20240101{n:06d}-abcdef{n:02d}", f"abcdef{n:02d}" + "0" * 32)
        for n in range(10, 19)
    ]
    with pytest.raises(RefError) as err:
        resolve_ref("abcdef1", tags)
    msg = str(err.value)
    assert "and 4 more" in msg
    assert msg.count("0.0.") == 5
    assert "0.0.18-" in msg  # newest candidates first


def test_resolve_longer_prefix_disambiguates() -> None:
    tags = [
        Tag("0.0.10-20240101000000-abcdef01", "abcdef01" + "1" * 32),
        Tag("0.0.11-20240102000000-abcdef01", "abcdef01" + "2" * 32),
    ]
    with pytest.raises(RefError, match="ambiguous"):
        resolve_ref("abcdef01", tags)
    assert resolve_ref("abcdef012", tags).raw == "0.0.11-20240102000000-abcdef01"


def test_resolve_rebuilt_commit_picks_newest_build() -> None:
    tags = [
        Tag("0.0.131-20240222212602-322f874b", C131),
        Tag("0.0.131-20240223080000-322f874b", C131),  # pipeline re-run on the same commit
    ]
    assert resolve_ref("322f874b", tags).raw == "0.0.131-20240223080000-322f874b"


def test_resolve_unknown_sha() -> None:
    with pytest.raises(RefError, match="no release version built from a commit starting with"):
        resolve_ref("0000000", _tags())


def test_resolve_latest_is_numeric_newest() -> None:
    tags = [
        Tag("0.0.99-20240301000000-aaaaaaaa", "a" * 40),
        Tag("0.0.100-20240101000000-bbbbbbbb", "b" * 40),
    ]
    assert resolve_ref("latest", tags).raw == "0.0.100-20240101000000-bbbbbbbb"
    assert resolve_ref("latest", _tags()).raw == V132


def test_resolve_latest_without_tags() -> None:
    with pytest.raises(RefError, match="no release versions"):
        resolve_ref("latest", [Tag("v1.0", "f" * 40)])


def test_resolve_mr() -> None:
    assert resolve_ref("mr42", _tags(), mr_versions={42: "0.0.133-dev-mr-42"}).mr == 42
    with pytest.raises(RefError, match="no dev build known for MR !43"):
        resolve_ref("mr43", _tags(), mr_versions={42: "0.0.133-dev-mr-42"})
    with pytest.raises(RefError, match="no dev build known for MR !42"):
        resolve_ref("mr42", _tags())


def test_resolve_full_dev_version() -> None:
    known = {42: "0.0.133-dev-mr-42"}
    assert resolve_ref("0.0.133-dev-mr-42", _tags(), mr_versions=known).raw == "0.0.133-dev-mr-42"
    with pytest.raises(RefError, match="use mr42"):
        resolve_ref("0.0.130-dev-mr-42", _tags(), mr_versions=known)


def test_resolve_previous() -> None:
    assert resolve_ref("previous", _tags(), previous=V127).raw == V127
    with pytest.raises(RefError, match="no previous version known for"):
        resolve_ref("previous", _tags())
    with pytest.raises(RefError, match="not a valid version"):
        resolve_ref("previous", _tags(), previous="garbage")


def test_resolve_checks_ref_first() -> None:
    with pytest.raises(RefError, match="not allowed"):
        resolve_ref("$(id)", _tags())


# --- newer_than ---------------------------------------------------------------


def test_newer_than_ascending_and_release_only() -> None:
    assert [v.raw for v in newer_than(_tags(), V127)] == [V131, V132]
    assert [v.raw for v in newer_than(_tags(), _v(V131))] == [V132]
    assert newer_than(_tags(), V132) == []


def test_newer_than_is_numeric() -> None:
    tags = [
        Tag("0.0.100-20240101000000-bbbbbbbb", "b" * 40),
        Tag("0.0.99-20240301000000-aaaaaaaa", "a" * 40),
        Tag("0.0.99-20240301000000-aaaaaaaa", "a" * 40),  # listed twice: reported once
    ]
    assert [v.n for v in newer_than(tags, "0.0.98-20240101000000-cccccccc")] == [99, 100]


def test_newer_than_rejects_non_version() -> None:
    with pytest.raises(RefError):
        newer_than(_tags(), "latest")


def test_a_release_as_chat_shows_it_resolves() -> None:
    """Every reply shows a release as `0.0.131 (322f874b)`: `0.0.131` typed back names it
    (was: "unknown ref '0.0.131'")."""
    assert resolve_ref("0.0.131", _tags()).raw == V131
    rerun = "0.0.131-20240222230000-322f874b"  # a re-run pipeline: the same commit again
    assert resolve_ref("0.0.131", [*_tags(), Tag(rerun, C131)]).raw == rerun
    other = "0.0.131-20240222230000-deadbeef"  # the same N built from another commit
    with pytest.raises(RefError) as err:
        resolve_ref("0.0.131", [*_tags(), Tag(other, "deadbeef" + "5" * 32)])
    assert str(err.value) == (
        f"ambiguous 0.0.131: 2 builds of different commits: {other}, {V131};"
        " give the full version or the commit sha"
    )
    with pytest.raises(RefError, match=f"^no release 0.0.140; newest is {V132}$"):
        resolve_ref("0.0.140", _tags())
    with pytest.raises(RefError, match="unknown ref"):
        resolve_ref("0.0.01", _tags())  # no leading zeros, as CI never writes them
