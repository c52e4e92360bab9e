from crnn.charset import load_charset
from crnn.data.corpus import Corpus, CorpusConfig


def test_lines_are_deterministic_and_fit_the_alphabet():
    cs = load_charset("zh_en")
    a, b = Corpus(CorpusConfig(), cs, seed=5), Corpus(CorpusConfig(), cs, seed=5)
    lines = [a.line(i) for i in range(300)]
    assert lines == [b.line(i) for i in range(300)]
    assert all(line and not cs.oov(line) for line in lines)
    assert all(len(line) <= 80 and line == line.strip() for line in lines)
    assert max(len(x) for x in lines) >= 60  # long document lines occur
    assert min(len(x) for x in lines) <= 3
    assert any(any("\u4e00" <= c <= "\u9fff" for c in x) for x in lines)
    assert any(any(c.isascii() and c.isalpha() for c in x) for x in lines)
    assert (
        Corpus(CorpusConfig(), cs, seed=6).line(0) != lines[0]
        or Corpus(CorpusConfig(), cs, seed=6).line(1) != lines[1]
    )


def test_digit_corpus_for_the_demo():
    cs = load_charset("digits")
    c = Corpus(CorpusConfig(kinds={"date": 1, "amount": 1, "phone": 1}, max_len=24), cs, seed=0)
    lines = [c.line(i) for i in range(200)]
    assert all(not cs.oov(x) for x in lines)
    assert any("-" in x for x in lines) and any("." in x for x in lines)
    assert c.stats.dropped_chars == 0
