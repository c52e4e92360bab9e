import pytest

from crnn.charset import Charset, CharsetError, LabelFilter, load_charset


def test_round_trip_mixed_text():
    cs = load_charset("zh_en")
    text = "发票号码：No. 12345 合计￥99.50（含税）"
    ids = cs.encode(text)
    assert all(0 < i < cs.num_classes for i in ids)
    assert cs.decode(ids) == text


def test_zh_en_contents():
    cs = load_charset("zh_en")
    hanzi = [c for c in cs.chars if "\u4e00" <= c <= "\u9fff"]
    assert len(hanzi) == 3755  # GB2312 level 1
    assert all(chr(c) in cs for c in range(0x20, 0x7F))
    assert all(c in cs for c in "，。、；：？！“”‘’（）《》【】—…·￥％")
    assert cs.num_classes == len(cs.chars) + 1


def test_alphabet_file_keeps_space(tmp_path):
    p = tmp_path / "a.txt"
    p.write_text("a\n \nb\n", encoding="utf-8")
    cs = load_charset(str(p))
    assert cs.chars == ("a", " ", "b")
    assert cs.encode("a b") == [1, 2, 3]


def test_bad_alphabet_files(tmp_path):
    dup = tmp_path / "dup.txt"
    dup.write_text("a\na\n", encoding="utf-8")
    with pytest.raises(CharsetError, match="duplicate"):
        load_charset(str(dup))
    with pytest.raises(CharsetError, match="unknown alphabet"):
        load_charset("no_such_alphabet")


def test_oov_policy_skip_counts():
    f = LabelFilter(Charset.from_string("0123456789"), "skip")
    assert f("123") == "123"
    assert f("12a3") is None
    assert f("x") is None
    s = f.stats.as_dict()
    assert (s["seen"], s["kept"], s["skipped_oov"]) == (3, 1, 2)
    assert set(s["top_oov_chars"]) == {"a", "x"}


def test_oov_policy_drop_counts():
    f = LabelFilter(Charset.from_string("0123456789"), "drop")
    assert f("12a3") == "123"
    assert f("abc") is None  # nothing left: skipped, and counted as emptied
    s = f.stats
    assert s.dropped_chars == 4 and s.emptied == 1 and s.kept == 1


def test_encode_refuses_oov():
    with pytest.raises(CharsetError, match="not in the alphabet"):
        Charset.from_string("01").encode("012")
