import json
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from helion_optuna import Config, InvalidConfig

FULL = {
    "block_sizes": [64, 32, 16],
    "loop_orders": [[1, 0]],
    "flatten_loops": [False],
    "l2_groupings": [8],
    "reduction_loops": [None, 128],
    "range_unroll_factors": [0, 2],
    "range_warp_specializes": [None, True],
    "range_num_stages": [0, 3],
    "range_multi_buffers": [None, False],
    "range_flattens": [True, None],
    "static_ranges": [False],
    "load_eviction_policies": ["", "first", "last"],
    "num_warps": 8,
    "num_stages": 3,
    "pid_type": "persistent_interleaved",
    "indexing": ["pointer", "tensor_descriptor", "block_ptr"],
}


def test_only_given_fields_are_kept():
    c = Config(block_sizes=[32], num_warps=None, BLOCK_K=64)
    assert c.config == {"block_sizes": [32], "BLOCK_K": 64}
    assert c["BLOCK_K"] == 64 and len(c) == 2 and list(c) == ["block_sizes", "BLOCK_K"]


def test_absent_fields_read_as_helion_reads_them():
    c = Config()
    for name in FULL:
        if name not in ("num_warps", "num_stages", "pid_type"):
            assert getattr(c, name) == [], name
    assert (c.num_warps, c.num_stages, c.pid_type, c.indexing) == (4, 1, "flat", [])


def test_properties_return_given_values():
    c = Config(**FULL)
    for name, value in FULL.items():
        assert getattr(c, name) == value


def test_equality_and_hash_by_content():
    a = Config(block_sizes=[16, 32], num_warps=4, X=[1, {"a": [2]}])
    b = Config(num_warps=4, X=[1, {"a": [2]}], block_sizes=[16, 32])
    assert a == b and hash(a) == hash(b)
    assert a != Config(block_sizes=[16, 32], num_warps=8)
    assert len({a, b}) == 1


@pytest.mark.parametrize(
    ("kwargs", "field", "allowed"),
    [
        ({"pid_type": "grid"}, "pid_type", "persistent_blocked"),
        ({"indexing": ["pointer", "texture"]}, "indexing[1]", "tensor_descriptor"),
        ({"indexing": "texture"}, "indexing", "block_ptr"),
        ({"load_eviction_policies": ["first", "never"]}, "load_eviction_policies[1]", "'last'"),
        ({"num_warps": 0}, "num_warps", "positive integer"),
        ({"num_warps": -4}, "num_warps", "positive integer"),
        ({"num_warps": 4.0}, "num_warps", "positive integer"),
        ({"block_sizes": [32, 0]}, "block_sizes[1]", "positive integers"),
        ({"block_sizes": [32, 16.0]}, "block_sizes[1]", "positive integers"),
        ({"block_sizes": [True]}, "block_sizes[0]", "positive integers"),
        ({"block_sizes": 32}, "block_sizes", "a list of positive integers"),
        ({"loop_orders": [[0, 0]]}, "loop_orders[0]", "permutations"),
        ({"num_stages": -1}, "num_stages", "non-negative integer"),
    ],
)
def test_bad_values_name_the_field_and_what_is_allowed(kwargs, field, allowed):
    with pytest.raises(InvalidConfig) as e:
        Config(**kwargs)
    assert str(e.value).startswith(field + ":")
    assert allowed in str(e.value)
    assert isinstance(e.value, ValueError)


def test_single_indexing_and_eviction_values_are_accepted_as_helion_does():
    c = Config(indexing="block_ptr", load_eviction_policies="last")
    assert c.indexing == "block_ptr" and c.load_eviction_policies == "last"


@pytest.mark.parametrize(
    ("text", "message"),
    [("{not json", "malformed Config JSON"), ("[1, 2]", "must be an object, got list"),
     ('"flat"', "must be an object, got str"), ('{"pid_type": "nope"}', "pid_type:")],
)
def test_bad_json_is_a_clear_error(text, message):
    with pytest.raises(InvalidConfig, match=message):
        Config.from_json(text)


def test_json_round_trip_keeps_key_order_and_user_keys():
    text = json.dumps({"num_warps": 8, "BLOCK_K": 64, "block_sizes": [16], "future_key": [1]})
    c = Config.from_json(text)
    assert list(c) == ["num_warps", "BLOCK_K", "block_sizes", "future_key"]
    assert json.loads(c.to_json()) == json.loads(text)
    assert Config.from_json(c.to_json()) == c


def test_save_load(tmp_path):
    c = Config(**FULL, GROUP_M=8)
    path = tmp_path / "sub" / "best.json"
    c.save(path)
    assert Config.load(path) == c
    assert os.listdir(path.parent) == ["best.json"]


def test_failed_save_leaves_previous_file_intact(tmp_path):
    path = tmp_path / "best.json"
    Config(num_warps=4).save(path)
    before = path.read_bytes()
    with pytest.raises(TypeError):
        Config(num_warps=8, bad=object()).save(path)  # not JSON-serializable
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["best.json"]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-1000, 1000) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3),
    max_leaves=6,
)


@given(
    block_sizes=st.lists(st.integers(1, 4096), max_size=4),
    num_warps=st.integers(1, 64) | st.none(),
    pid_type=st.sampled_from(["flat", "xyz", "persistent_blocked", "persistent_interleaved"]),
    indexing=st.lists(st.sampled_from(["pointer", "tensor_descriptor", "block_ptr"]), max_size=3),
    user=st.dictionaries(st.from_regex(r"[A-Z][A-Z_]{0,6}", fullmatch=True), json_values,
                         max_size=3),
)
def test_json_round_trip_property(block_sizes, num_warps, pid_type, indexing, user):
    c = Config(block_sizes=block_sizes, num_warps=num_warps, pid_type=pid_type,
               indexing=indexing, **user)
    back = Config.from_json(c.to_json())
    assert back == c and back.to_json() == c.to_json()


def test_helion_files_load_and_save_back_unchanged(tmp_path):
    helion = pytest.importorskip("helion")
    theirs = helion.Config(
        block_sizes=[64, 64, 32], loop_orders=[[1, 0]], l2_groupings=[4], num_warps=8,
        num_stages=3, pid_type="persistent_blocked", indexing=["pointer", "block_ptr"],
        load_eviction_policies=["", "last"], range_unroll_factors=[0, 2],
        range_warp_specializes=[None, True], reduction_loops=[None],
        # keys helion_optuna does not know: kept as user keys
        num_sm_multiplier=2, maxnreg=128, atomic_indexing=["pointer"], BLOCK_K=32,
    )
    helion_file, our_file = tmp_path / "helion.json", tmp_path / "ours.json"
    theirs.save(helion_file)
    ours = Config.load(helion_file)
    assert ours.config == theirs.config
    ours.save(our_file)
    assert our_file.read_bytes() == helion_file.read_bytes()
    assert helion.Config.load(our_file) == theirs
    assert helion.Config(**ours) == theirs
