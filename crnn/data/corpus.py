"""Text for the synthetic lines: words by frequency, invoice-like fields and mixed strings.

Every line is a pure function of (seed, index), so a data set, a resumed stream or a DDP rank can ask for
line i and always get the same text. Lines only use characters of the alphabet: a generator whose output
does not fit is retried, and what could not be fitted is counted in `CorpusStats`.
"""

from __future__ import annotations

import gzip
import json
import random
import re
import string
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

from crnn.charset import Charset

ZH_PUNCT_INLINE = "，、；："
ZH_PUNCT_END = "。？！"
PAIRS = ["“”", "‘’", "（）", "《》", "【】"]
EN_PUNCT = ",.;:?!'\"()-&/"


@dataclass
class CorpusConfig:
    kinds: dict[str, float] = field(default_factory=lambda: {"zh_words": 4, "en_words": 1, "fields": 2, "mixed": 2})
    # (low, high, weight): a line's target length is drawn uniformly from a range chosen by weight.
    lengths: list[list[float]] = field(
        default_factory=lambda: [[1, 8, 0.3], [8, 25, 0.45], [25, 60, 0.15], [60, 80, 0.1]]
    )
    max_len: int = 80
    freq_power: float = 0.5  # word sampling weight = frequency ** power (1 = natural, 0 = uniform)
    # the same for running prose (gen_prose), None: freq_power. A journal's words come at their natural
    # frequencies: `of`, `the` and `and` are one word in 9 of its lines at 1.0, one in 60 at 0.5
    prose_freq_power: float | None = None
    vocab_size: int = 60000  # most frequent words per language
    # A word list written by `write_vocab` (a training bundle carries one): read instead of the wordfreq
    # package (58 MB), with the same words and weights, so the lines are the same
    vocab_file: str | None = None


@dataclass
class CorpusStats:
    lines: int = 0
    retries: int = 0
    dropped_chars: int = 0

    def as_dict(self) -> dict:
        return {"lines": self.lines, "retries": self.retries, "dropped_chars": self.dropped_chars}


def _frequencies(
    lang: str, vocab_file: str | None, charset: Charset, size: int
) -> Iterable[tuple[str, float]]:
    """(word, frequency) pairs, most frequent first: from wordfreq, or from a file `write_vocab` made for
    this alphabet with at least `size` words per language (else the lines would not be the same)."""
    if not vocab_file:
        import wordfreq

        return wordfreq.get_frequency_dict(lang).items()
    with gzip.open(vocab_file, "rt", encoding="utf-8") as f:
        data = json.load(f)
    if data["charset"] != charset.fingerprint() or data["vocab_size"] < size or lang not in data["words"]:
        raise ValueError(
            f"corpus.vocab_file={vocab_file} was written for another alphabet, fewer words (vocab_size "
            f"{data['vocab_size']}) or other languages ({sorted(data['words'])}) than {lang!r} at vocab_size "
            f"{size} asks; write it again with crnn.data.corpus.write_vocab"
        )
    return ((w, float(fr)) for w, fr in data["words"][lang])


@lru_cache(maxsize=8)
def _vocab(
    lang: str, size: int, power: float, charset_key: str, vocab_file: str | None = None
) -> tuple[list[str], list[float]]:
    charset = Charset.from_string(charset_key)
    words, weights = [], []
    for w, f in _frequencies(lang, vocab_file, charset, size):
        if all(c in charset for c in w):
            words.append(w)
            weights.append(f**power)
            if len(words) >= size:
                break
    cum, total = [], 0.0
    for wt in weights:
        total += wt
        cum.append(total)
    return words, cum


def write_vocab(
    path: str | Path, cfg: CorpusConfig, charset: Charset, langs: tuple[str, ...] = ("zh", "en")
) -> int:
    """The words `Corpus` would draw from wordfreq, with their frequencies, to a small gzipped JSON file
    (`corpus.vocab_file`): a training bundle carries this instead of the wordfreq package. Returns the
    number of words written."""
    words = {}
    for lang in langs:
        kept = []
        for w, f in _frequencies(lang, cfg.vocab_file, charset, cfg.vocab_size):
            if all(c in charset for c in w):
                kept.append([w, f])
                if len(kept) >= cfg.vocab_size:
                    break
        words[lang] = kept
    data = {"charset": charset.fingerprint(), "vocab_size": cfg.vocab_size, "words": words}
    with gzip.open(path, "wt", encoding="utf-8", compresslevel=9) as f:
        json.dump(data, f, ensure_ascii=False, separators=(",", ":"))
    return sum(len(v) for v in words.values())


def corpus_identity(cfg: CorpusConfig) -> dict:
    """The corpus config for fingerprints: where the word list is read from does not change the lines."""
    d = asdict(cfg)
    d.pop("vocab_file", None)
    if d.get("prose_freq_power") is None:  # added later: a corpus without it keeps its fingerprint
        d.pop("prose_freq_power", None)
    return d


class Corpus:
    """Draws lines of text that the given alphabet can represent."""

    def __init__(self, cfg: CorpusConfig, charset: Charset, seed: int = 0) -> None:
        self.cfg = cfg
        self.charset = charset
        self.seed = seed
        self.stats = CorpusStats()
        self._faker = None
        unknown = sorted(set(cfg.kinds) - set(GENERATORS))
        if unknown:
            raise ValueError(f"corpus.kinds has unknown kind(s) {unknown}; known: {sorted(GENERATORS)}")
        self._kinds = [k for k, w in cfg.kinds.items() if w > 0]
        self._kind_w = [cfg.kinds[k] for k in self._kinds]
        if not self._kinds:
            raise ValueError("corpus.kinds gives every kind weight 0")
        self._digits = [c for c in string.digits if c in charset]
        self._chars = list(charset.chars)

    # -- resources, loaded on first use so a worker process pays for them once --
    def faker(self):
        if self._faker is None:
            from faker import Faker

            self._faker = Faker("zh_CN")
        return self._faker

    def for_scene(
        self,
        kinds: dict[str, float] | None = None,
        lengths: list[list[float]] | None = None,
        max_len: int = 0,
    ) -> Corpus:
        """This corpus with a scene's own text kinds, lengths and longest line (a recipe's `text`,
        `text_lengths`, `text_max_len`); itself when the scene overrides nothing. The variant shares seed,
        alphabet, Faker and stats, so line i of a scene is still a pure function of (seed, i)."""
        if not kinds and not lengths and not max_len:
            return self
        cfg = CorpusConfig(
            kinds=dict(kinds) if kinds else dict(self.cfg.kinds),
            lengths=[list(r) for r in lengths] if lengths else self.cfg.lengths,
            max_len=max_len or self.cfg.max_len,
            freq_power=self.cfg.freq_power,
            prose_freq_power=self.cfg.prose_freq_power,
            vocab_size=self.cfg.vocab_size,
            vocab_file=self.cfg.vocab_file,
        )
        variant = Corpus(cfg, self.charset, seed=self.seed)
        variant.stats = self.stats
        variant._faker = self._faker
        return variant

    def words(self, lang: str, power: float | None = None) -> tuple[list[str], list[float]]:
        c = self.cfg
        power = c.freq_power if power is None else power
        return _vocab(lang, c.vocab_size, power, self.charset.as_string(), c.vocab_file)

    # -- drawing --
    def rng_for(self, index: int, attempt: int = 0) -> random.Random:
        return random.Random(f"corpus:{self.seed}:{index}:{attempt}")

    def target_length(self, rng: random.Random) -> int:
        ranges = self.cfg.lengths
        lo, hi, _ = rng.choices(ranges, weights=[r[2] for r in ranges])[0]
        return max(1, min(self.cfg.max_len, int(rng.uniform(lo, hi + 1))))

    def line(self, index: int, target_len: int | None = None, attempt: int = 0) -> str:
        """Line `index` of this corpus (deterministic); `target_len` overrides the drawn length."""
        rng = self.rng_for(index, attempt)
        target = self.target_length(rng) if target_len is None else max(1, min(self.cfg.max_len, target_len))
        for _attempt in range(20):
            kind = rng.choices(self._kinds, weights=self._kind_w)[0]
            text = _clean(GENERATORS[kind](self, rng, target), self.cfg.max_len)
            if text and not self.charset.oov(text):
                self.stats.lines += 1
                return text
            self.stats.retries += 1
        # Nothing fitted: keep what the alphabet can represent, and count what was dropped.
        kept = _clean("".join(c for c in text if c in self.charset), self.cfg.max_len)
        self.stats.dropped_chars += len(text) - len(kept)
        if not kept:
            kept = rng.choice([c for c in self._chars if c != " "])
        self.stats.lines += 1
        return kept


def _clean(text: str, max_len: int) -> str:
    """Single spaces, none at the ends (an edge space is invisible, so the label would lie)."""
    text = " ".join(text.split())
    return text[:max_len].strip()


def _pick_words(
    corpus: Corpus, lang: str, rng: random.Random, target: int, sep: str, power: float | None = None
) -> list[str]:
    words, cum = corpus.words(lang, power)
    if not words:
        return []
    out: list[str] = []
    n = 0
    while n < target:
        w = rng.choices(words, cum_weights=cum)[0]
        out.append(w)
        n += len(w) + len(sep)
    return out


def gen_zh_words(c: Corpus, rng: random.Random, target: int) -> str:
    parts = _pick_words(c, "zh", rng, target, "")
    text = ""
    for i, w in enumerate(parts):
        text += w
        if i < len(parts) - 1 and rng.random() < 0.12:
            text += rng.choice(ZH_PUNCT_INLINE)
    if rng.random() < 0.3:
        text += rng.choice(ZH_PUNCT_END)
    if rng.random() < 0.08 and len(text) < target:
        a, b = rng.choice(PAIRS)
        text = a + text + b
    return text[: max(target, 1)]


def gen_en_words(c: Corpus, rng: random.Random, target: int) -> str:
    parts = _pick_words(c, "en", rng, target, " ")
    style = rng.random()
    if style < 0.2:
        parts = [p.upper() for p in parts]
    elif style < 0.55:
        parts = [p.capitalize() for p in parts]
    text = " ".join(parts)
    if len(text) > target and " " in text[: target + 1]:
        text = text[: text.rfind(" ", 0, target + 1)]  # whole words, not a word cut in half
    if rng.random() < 0.3:
        text += rng.choice(".,:;?!")
    return text


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(string.digits) for _ in range(n))


def _letters(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(string.ascii_uppercase) for _ in range(n))


def _product_code(rng: random.Random) -> str:
    """A shop's article code: letters and digits joined by hyphens and slashes ("WA29-20", "GB06-24/288",
    "BQ21-31/2-12/144"), as hardware and stationery tills print under each item."""
    code = f"{_letters(rng, rng.randint(1, 3))}{_digits(rng, rng.randint(1, 3))}"
    for _ in range(rng.randint(1, 3)):
        code += f"{rng.choice('-/-')}{_digits(rng, rng.randint(1, 3))}"
    return code


def gen_date(c: Corpus, rng: random.Random, target: int) -> str:
    y, m, d = rng.randint(1950, 2035), rng.randint(1, 12), rng.randint(1, 28)
    fmt = rng.choice(
        [f"{y}-{m:02d}-{d:02d}", f"{y}/{m:02d}/{d:02d}", f"{y}.{m}.{d}", f"{d:02d}/{m:02d}/{y}",
         f"{y}年{m}月{d}日", f"{y}-{m:02d}-{d:02d} {rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}",
         f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}"]
    )
    return fmt


def gen_amount(c: Corpus, rng: random.Random, target: int) -> str:
    value = round(10 ** rng.uniform(-1, 7), 2)
    body = rng.choice([f"{value:,.2f}", f"{value:.2f}", f"{int(value):,}", f"{int(value)}"])
    return rng.choice([body, f"¥{body}", f"￥{body}", f"{body}元", f"-{body}", f"+{body}",
                       f"{rng.randint(1, 99)}%", f"{body} ¥"])


def gen_phone(c: Corpus, rng: random.Random, target: int) -> str:
    mobile = "1" + rng.choice("3456789") + _digits(rng, 9)
    return rng.choice([mobile, f"{mobile[:3]}-{mobile[3:7]}-{mobile[7:]}", f"{mobile[:3]} {mobile[3:7]} {mobile[7:]}",
                       f"0{_digits(rng, 2)}-{_digits(rng, 8)}", f"+86 {mobile}", f"({_digits(rng, 3)}){_digits(rng, 8)}",
                       f"400-{_digits(rng, 3)}-{_digits(rng, 4)}"])


def gen_id_number(c: Corpus, rng: random.Random, target: int) -> str:
    kind = rng.random()
    if kind < 0.4:
        return _digits(rng, 17) + rng.choice(string.digits + "X")
    if kind < 0.7:
        return _digits(rng, rng.randint(8, 20))  # invoice / account numbers
    return "-".join(_digits(rng, rng.randint(2, 5)) for _ in range(rng.randint(2, 4)))


def gen_number(c: Corpus, rng: random.Random, target: int) -> str:
    n = max(1, min(target, 24))
    groups, length = [], 0
    while length < n:
        g = _digits(rng, rng.randint(1, 6))
        if rng.random() < 0.3:
            g += rng.choice(".,:/-") + _digits(rng, rng.randint(1, 3))
        groups.append(g)
        length += len(g) + 1
    return rng.choice([" ", "", "-", "/"]).join(groups)[:n]


def gen_fields(c: Corpus, rng: random.Random, target: int) -> str:
    f = c.faker()
    f.random = rng
    key_values = [
        ("姓名", f.name), ("地址", f.address), ("公司", f.company), ("单位名称", f.company),
        ("电话", lambda: gen_phone(c, rng, target)), ("日期", lambda: gen_date(c, rng, target)),
        ("金额", lambda: gen_amount(c, rng, target)), ("价税合计", lambda: gen_amount(c, rng, target)),
        ("发票号码", lambda: _digits(rng, 8)), ("发票代码", lambda: _digits(rng, 12)),
        ("身份证号", lambda: gen_id_number(c, rng, target)), ("开户行及账号", lambda: f.company() + _digits(rng, 16)),
        ("纳税人识别号", lambda: "91" + _digits(rng, 14) + rng.choice(string.ascii_uppercase) + _digits(rng, 1)),
        ("邮箱", f.email),
    ]
    key, value = rng.choice(key_values)
    v = value()
    style = rng.random()
    if style < 0.5:
        return f"{key}{rng.choice(['：', ':', ': ', ' '])}{v}"
    return v


def gen_mixed(c: Corpus, rng: random.Random, target: int) -> str:
    pieces: list[str] = []
    n = 0
    while n < target:
        k = rng.random()
        if k < 0.45:
            p = gen_zh_words(c, rng, rng.randint(2, 8))
        elif k < 0.7:
            p = gen_en_words(c, rng, rng.randint(3, 12))
        elif k < 0.85:
            p = gen_number(c, rng, rng.randint(1, 8))
        else:
            p = rng.choice([gen_date, gen_amount, gen_phone])(c, rng, target)
        pieces.append(p)
        n += len(p) + 1
    return rng.choice(["", " "]).join(pieces)[: max(target, 1)]


def gen_charset_random(c: Corpus, rng: random.Random, target: int) -> str:
    """Uniform over the alphabet, so rare characters are seen too (words alone never show most of them)."""
    return "".join(rng.choice(c._chars) for _ in range(target))


# -- text of the real-image recipes (configs/render/real.yaml) --

PLATE_PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
PLATE_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"  # no I or O on Chinese plates


def gen_plate(c: Corpus, rng: random.Random, target: int) -> str:
    """A Chinese licence plate: province hanzi, issuing-office letter, then five letters and digits (six,
    mostly digits, on green new-energy plates); a few special suffixes; the separator dot when it has one."""
    head = rng.choice(PLATE_PROVINCES) + rng.choice(PLATE_LETTERS)
    if rng.random() < 0.15:  # new energy: D (electric) or F (hybrid) and five digits, or the reverse
        d = rng.choice("DF")
        tail = d + _digits(rng, 5) if rng.random() < 0.7 else _digits(rng, 5) + d
    else:
        pool = PLATE_LETTERS + string.digits * 3
        tail = "".join(rng.choice(pool) for _ in range(5))
        if rng.random() < 0.05:
            tail = tail[:4] + rng.choice("学警挂港澳")
    sep = rng.choices(["·", " ", ""], weights=[0.6, 0.15, 0.25])[0]
    return head + sep + tail


RECEIPT_KEYS = [
    "TOTAL",
    "SUBTOTAL",
    "SUB TOTAL",
    "TOTAL QTY",
    "GRAND TOTAL",
    "NET TOTAL",
    "TOTAL SALES",
    "CASH",
    "CHANGE",
    "ROUNDING",
    "ROUNDING ADJ",
    "DISCOUNT",
    "TAX",
    "GST",
    "VAT",
    "SERVICE CHARGE",
    "SVC CHG",
    "AMOUNT",
    "AMT",
    "PRICE",
    "QTY",
    "BALANCE",
    "PAID",
    "TENDERED",
    "CARD",
    "VISA",
    "MASTERCARD",
    "DEBIT",
    "CREDIT",
    "DEPOSIT",
    "TOTAL INCL. TAX",
    "TOTAL EXCL. TAX",
    "TOTAL AMOUNT",
    "AMOUNT DUE",
    "TIP",
]
RECEIPT_CODES = [
    "INVOICE NO",
    "RECEIPT NO",
    "RECEIPT #",
    "BILL NO",
    "DOC NO",
    "ORDER #",
    "TABLE",
    "CASHIER",
    "TERMINAL ID",
    "TRANS ID",
    "REF NO",
    "GST REG NO",
    "TAX ID",
    "VAT NO",
    "REG NO",
    "MEMBER NO",
    "POS",
    "STAFF",
    "COUNTER",
    "TEL",
    "FAX",
    "DATE",
    "TIME",
    "APPR CODE",
    "BATCH NO",
    "TRACE NO",
    "CARD NO",
]
RECEIPT_SUFFIXES = [
    "LTD",
    "INC",
    "CO.",
    "LLC",
    "MART",
    "STORE",
    "CAFE",
    "RESTAURANT",
    "TRADING",
    "STREET",
    "ROAD",
]
RECEIPT_UNITS = ["PCS", "PC", "EA", "KG", "G", "L", "ML", "BOX", "PKT", "BTL", "SET", "UNIT"]
RECEIPT_FOOTERS = [
    "THANK YOU",
    "THANK YOU, PLEASE COME AGAIN",
    "PLEASE COME AGAIN",
    "GOODS SOLD ARE NOT RETURNABLE",
    "KEEP THIS RECEIPT",
    "CUSTOMER COPY",
    "MERCHANT COPY",
    "TAX INVOICE",
    "CASH SALE",
    "OFFICIAL RECEIPT",
    "NO REFUND",
    "HAVE A NICE DAY",
    "SIGNATURE NOT REQUIRED",
    "PRICES INCLUDE TAX",
    "THANK YOU & COME AGAIN!",
    "THANK YOU & PLEASE COME AGAIN.",
    "GOODS SOLD ARE NOT RETURNABLE & REFUNDABLE",
    "NO EXCHANGE & NO REFUND",
    "STRICTLY NO CASH REFUND.",
]
# a till's tax flag, printed after an amount or alone in its own column ("25.90 *S")
RECEIPT_TAX_FLAGS = ["*S", "*SR", "*Z", "*ZR", "S", "SR", "Z", "T", "*", "E"]
# a column's unit or currency in brackets after its heading ("AMT(RM)", "TAX ($)", "QTY(S)")
RECEIPT_BRACKETED = {
    "AMT": "RM$",
    "AMOUNT": "RM$",
    "TAX": "RM$%",
    "PRICE": "RM$",
    "U/PRICE": "RM$",
    "TOTAL": "RM$",
    "NETT": "RM$",
    "DISC": "RM%",
    "QTY": "S",
}
RECEIPT_TAX_CODES = ["SR", "ZR", "ZRL", "GST", "VAT", "TAX", "SST", "SALES TAX", "SERVICE TAX", "TX"]
RECEIPT_TAX_RATES = [0, 5, 6, 7, 8, 9, 10, 13, 15, 16, 19, 20]
RECEIPT_CURRENCIES = ["", "", "", "$", "RM", "USD", "EUR", "GBP", "S$", "HK$", "￥", "RMB"]
RECEIPT_ZH = [
    "合计",
    "小计",
    "实收",
    "应收",
    "找零",
    "单价",
    "数量",
    "金额",
    "收银员",
    "流水号",
    "优惠",
    "现金",
    "微信支付",
    "支付宝",
    "会员卡号",
    "交易时间",
    "订单号",
    "商品名称",
    "谢谢惠顾",
    "欢迎再次光临",
    "发票",
]


def _money(rng: random.Random) -> str:
    value = round(10 ** rng.uniform(-1, 4), 2)
    body = f"{value:,.2f}" if value >= 1000 and rng.random() < 0.5 else f"{value:.2f}"
    cur = rng.choice(RECEIPT_CURRENCIES)
    return f"{cur}{rng.choice(['', ' '])}{body}" if cur else body


def _code(rng: random.Random) -> str:
    n = rng.randint(4, 12)
    if rng.random() < 0.15:  # a till's id and a serial ("T1 R000118085") or a dated one ("SH01 ZJ86")
        till = f"{_letters(rng, rng.randint(1, 2))}{_digits(rng, rng.randint(1, 2))}"
        return f"{till} {_letters(rng, 1)}{_digits(rng, n)}"
    if rng.random() < 0.5:
        return _letters(rng, rng.randint(1, 3)) + _digits(rng, n)
    if rng.random() < 0.5:
        return _digits(rng, n)
    return f"{_digits(rng, rng.randint(4, 7))}-{rng.choice(string.ascii_uppercase)}"


def _receipt_item(words, rng: random.Random) -> str:
    """An item: name, quantity, unit price, amount, article code or tax flag, in one of the common layouts."""
    name = words(rng.randint(4, 22))
    qty = rng.randint(1, 12)
    unit = f" {rng.choice(RECEIPT_UNITS)}" if rng.random() < 0.3 else ""
    return rng.choice(
        [
            f"{name} {_money(rng)}",
            f"{qty} X {_money(rng)}",
            f"{qty}{unit} X {_money(rng)} {_money(rng)}",
            f"{name} {qty} {_money(rng)}",
            f"{qty} {name}",
            name,
            f"{_digits(rng, rng.randint(6, 13))} {name}",
            f"{qty} @ {_money(rng)}",  # a unit price after the quantity, as most tills print it
            f"{qty}{unit} @ {_money(rng)} {_money(rng)}",
            f"{name} {qty}{unit.strip()}{rng.choice(['@', ' @ ', ' @'])}{_money(rng)}",
            _product_code(rng),  # the article code under an item's name
            f"{_product_code(rng)} {name}",
            f"{_money(rng)} {rng.choice(RECEIPT_TAX_FLAGS)}",  # an amount and its tax flag
            rng.choice(RECEIPT_TAX_FLAGS),  # ... or the flag alone in its column
        ]
    )


def _receipt_key(rng: random.Random) -> str:
    """A total's key and amount, or a bare key: a column heading with its unit in brackets, or a form's label
    ending in its colon with the value in another column ("ROUNDING :", "AMT(RM)")."""
    if rng.random() < 0.75:
        return f"{rng.choice(RECEIPT_KEYS)}{rng.choice([' ', ': ', ' : ', ':', '  '])}{_money(rng)}"
    if rng.random() < 0.3:
        key = rng.choice(list(RECEIPT_BRACKETED))
        units = RECEIPT_BRACKETED[key]
        unit = "RM" if units.startswith("RM") and rng.random() < 0.5 else rng.choice(units.replace("RM", ""))
        return f"{key}{rng.choice(['', ' '])}({unit})"
    return f"{rng.choice(RECEIPT_KEYS)}{rng.choice(['', ':', ' :', ' :'])}"


def _receipt_code(c: Corpus, rng: random.Random, target: int) -> str:
    """A code's key and value, as one segment, a form's label alone (its value in the next column), the
    value alone after its column of colons, or the pair in brackets ("[GST ID: 001914093568]")."""
    key = rng.choice(RECEIPT_CODES)
    if key in ("TEL", "FAX"):
        value = gen_phone(c, rng, target)
    elif key in ("DATE", "TIME"):
        value = gen_date(c, rng, target)
    elif key == "CARD NO":
        value = "*" * rng.choice([4, 8, 12]) + _digits(rng, 4)
    else:
        value = _code(rng)
    r = rng.random()
    if r < 0.12:
        return f"{key}{rng.choice([':', ' :', '.:', ' :'])}"
    if r < 0.22:
        return f"{rng.choice([':', ': ', ': '])}{value}"
    if r < 0.3:
        left, right = rng.choice(["()", "[]"])
        return f"{left}{key}{rng.choice([': ', ':', ' '])}{value}{right}"
    return f"{key}{rng.choice([' ', ': ', ' : ', ':', ' # '])}{value}"


def _receipt_shop(words, rng: random.Random) -> str:
    """The shop: a name (two joined by an ampersand at times) and a company or street suffix, an address's
    street numbers ("NO. 1 & 3,"), or a heading starred on both sides ("** TAX INVOICE **")."""
    r = rng.random()
    if r < 0.12:
        stars = "*" * rng.randint(1, 3)
        heading = rng.choice([f for f in RECEIPT_FOOTERS if len(f) <= 30])
        return f"{stars}{rng.choice(['', ' '])}{heading}{rng.choice(['', ' '])}{stars}"
    name = words(rng.randint(5, 20))
    if r < 0.2:  # initials joined tight: "B&B", "A&W"
        name = f"{_letters(rng, rng.randint(1, 2))}&{_letters(rng, rng.randint(1, 2))} {name}"
    elif r < 0.3:
        name = f"{name.split(' ')[0]} & {words(rng.randint(3, 10))}"
    text = f"{name} {rng.choice(RECEIPT_SUFFIXES)}"
    if r > 0.7:
        number = f"{rng.randint(1, 300)}" + (f" & {rng.randint(1, 300)}" if rng.random() < 0.4 else "")
        text = f"NO. {number}, {text}"
    return text


def gen_receipt(c: Corpus, rng: random.Random, target: int) -> str:
    """A line of a till receipt or a ticket: item lines, totals, codes, dates, footers; mostly upper case."""
    k = rng.random()
    words = lambda n: " ".join(_pick_words(c, "en", rng, n, " ")).upper()  # noqa: E731
    if k < 0.25:
        text = _receipt_item(words, rng)
    elif k < 0.31:  # a tax code with its rate: "SR @ 6%", "GST@0%", "VAT 20% 1.50"
        rate = f"{rng.choice(RECEIPT_TAX_CODES)}{rng.choice([' @ ', '@', ' @', ' ', '='])}"
        rate += f"{rng.choice(RECEIPT_TAX_RATES)}%"
        text = rng.choice([rate, f"{rate} {_money(rng)}", f"({rate})", f"TOTAL {rate}"])
    elif k < 0.5:
        text = _receipt_key(rng)
    elif k < 0.65:
        text = _receipt_code(c, rng, target)
    elif k < 0.73:
        y, m, d = rng.randint(2000, 2035), rng.randint(1, 12), rng.randint(1, 28)
        hh, mm = rng.randint(1, 12), rng.randint(0, 59)
        text = rng.choice(
            [
                f"{d:02d}/{m:02d}/{y} {hh:02d}:{mm:02d} {rng.choice(['AM', 'PM'])}",
                f"{d:02d}-{m:02d}-{y} {rng.randint(0, 23):02d}:{mm:02d}:{rng.randint(0, 59):02d}",
                f"{hh}:{mm:02d} {rng.choice(['AM', 'PM'])}",
                gen_date(c, rng, target),
            ]
        )
    elif k < 0.8:
        text = rng.choice(RECEIPT_FOOTERS)
    elif k < 0.86:
        w = _pick_words(c, "en", rng, 8, "") or ["shop"]
        host = "".join(w[:2]).lower()
        text = rng.choice(
            [
                f"WWW.{host}.COM",
                f"{host}@{w[-1].lower()}.com",
                f"https://{host}.com/{w[-1]}",
                f"{host.upper()}@GMAIL.COM",
            ]
        )
    elif k < 0.93:
        text = _receipt_shop(words, rng)
    else:
        key = rng.choice(RECEIPT_ZH)
        value = rng.choice([_money(rng), _code(rng), gen_date(c, rng, target)])
        text = f"{key}{rng.choice(['：', ':', ' '])}{value}"
    if rng.random() < 0.2 and not TILL_CODE.search(text):
        text = text.title() if rng.random() < 0.5 else text.capitalize()
    return text


# what a till prints in capitals whatever the case of the words around it: a tax flag or a starred heading,
# an article code, a unit in brackets, initials joined tight ("*S", "GB06-24/288", "AMT(RM)", "B&B")
TILL_CODE = re.compile(r"\*|[A-Z]\d+[-/]|\((RM|S|\$|%)\)|\b[A-Z]{1,2}&[A-Z]")


def gen_sign(c: Corpus, rng: random.Random, target: int) -> str:
    """Scene text: a word or a few (a shop sign, a label, a street name), often upper case, some numbers."""
    k = rng.random()
    if k < 0.55:
        text = gen_en_words(c, rng, max(2, min(target, 24)))
        r = rng.random()
        text = text.upper() if r < 0.4 else text.title() if r < 0.7 else text
    elif k < 0.85:
        text = gen_zh_words(c, rng, max(2, min(target, 12)))
        if rng.random() < 0.2:
            text += f"{rng.randint(1, 999)}{rng.choice('号路楼层室')}"
    else:
        text = rng.choice(
            [
                f"[{rng.randint(0, 99):02d}]",
                f"NO. {rng.randint(1, 999)}",
                f"{rng.randint(1, 99)}%",
                f"{rng.choice(string.ascii_uppercase)}{rng.randint(1, 99)}",
                gen_phone(c, rng, target),
                f"{rng.randint(1, 999)} {gen_en_words(c, rng, 8).upper()}",
            ]
        )
    return text


def gen_prose(c: Corpus, rng: random.Random, target: int) -> str:
    """A line of printed English prose as a scanned journal shows it: sentence case, commas and full stops,
    sometimes a semicolon, a hyphenated compound, a reference, a number, a parenthesis, or a word
    hyphenated at the line's end."""
    if rng.random() < 0.1:  # a reference-list line
        words, _ = c.words("en")
        names = ", ".join(
            f"{rng.choice(string.ascii_uppercase)}. {rng.choice(words[:5000]).capitalize()}"
            for _ in range(rng.randint(1, 3))
        )
        return f"[{rng.randint(1, 40)}] {names}, and"[:target]
    parts = _pick_words(c, "en", rng, target + 8, " ", c.cfg.prose_freq_power)
    out, n, start = [], 0, rng.random() < 0.4
    for w in parts:
        if start:
            w = w.capitalize()
            start = False
        if rng.random() < 0.03:
            w = f"({w}"
            if rng.random() < 0.5:
                w += ")"
        if rng.random() < 0.02:
            w = str(rng.randint(1, 2000))
        compound = out and len(out[-1]) > 3 and out[-1].isalpha() and len(w) > 3 and w.isalpha()
        if compound and rng.random() < 0.04:
            out[-1] += f"-{w}"  # a hyphenated compound ("multi-resolution", "long-term") inside the line
            n += len(w) + 1
            continue
        r = rng.random()
        if r < 0.07:
            w += ","
        elif r < 0.11:
            w += "."
            start = True
        elif r < 0.125:
            w += rng.choice(";:")
        out.append(w)
        n += len(w) + 1
        if n >= target:
            break
    text = " ".join(out)
    if len(text) > target and " " in text:
        text = text[: text.rfind(" ", 0, target + 1)]
    last = text.split(" ")[-1]
    if rng.random() < 0.2 and len(last) > 5 and last.isalpha():  # a word broken at the line's end
        text = text[: len(text) - len(last)] + last[: rng.randint(2, len(last) - 2)] + "-"
    return text


def gen_ui(c: Corpus, rng: random.Random, target: int) -> str:
    """Text of a screen: buttons and menus, status lines, times, file names, chat messages."""
    k = rng.random()
    if k < 0.3:
        return gen_mixed(c, rng, target) if rng.random() < 0.5 else gen_en_words(c, rng, target)
    if k < 0.5:
        return gen_zh_words(c, rng, target)
    hh, mm = rng.randint(0, 23), rng.randint(0, 59)
    words = _pick_words(c, "en", rng, 10, " ") or ["file"]
    return rng.choice(
        [
            " ".join(words[:2]).capitalize(),
            f"{hh}:{mm:02d}",
            f"{hh % 12 or 12}:{mm:02d} {rng.choice(['AM', 'PM'])}",
            f"{rng.randint(1, 99)} new messages",
            f"{rng.randint(1, 99)} unread",
            f"{rng.randint(1, 100)}%",
            f"IMG_{_digits(rng, 4)}.JPG",
            f"{words[0]}_{_digits(rng, 2)}.{rng.choice(['pdf', 'docx', 'png', 'txt'])}",
            f"v{rng.randint(1, 12)}.{rng.randint(0, 20)}.{rng.randint(0, 9)}",
            f"昨天 {hh}:{mm:02d}",
            f"{rng.choice(['已读', '未读', '发送', '撤回', '下载完成', '正在输入'])}",
            f"{words[0].capitalize()} {hh}:{mm:02d}",
            f"{rng.randint(1, 999)} MB",
            f"www.{words[0]}.com",
        ]
    )


SPEC_UNITS = ["ml", "mL", "g", "kg", "L", "mm", "cm", "m", "W", "V", "mAh", "GB", "片", "粒", "袋", "盒", "个月", "年", "天", "元"]
ZH_ORDINALS = "一二三四五六七八九十"
ZH_PUNCT = ZH_PUNCT_INLINE + ZH_PUNCT_END  # what gen_zh_words may put at a piece's end


def _spec_value(c: Corpus, rng: random.Random, target: int) -> str:
    k = rng.random()
    if k < 0.45:  # words, sometimes a list of them
        n = max(2, target)
        if rng.random() < 0.4:
            items = [gen_zh_words(c, rng, rng.randint(2, 5)).strip(ZH_PUNCT) for _ in range(rng.randint(2, 5))]
            return "、".join(i for i in items if i)[:n]
        return gen_zh_words(c, rng, n)
    if k < 0.65:  # a quantity
        q = rng.choice([str(rng.randint(1, 999)), f"{rng.uniform(0.1, 99):.1f}", f"{rng.randint(1, 20)}x{rng.randint(1, 50)}"])
        return q + rng.choice(SPEC_UNITS)
    if k < 0.8:  # a model or part number
        letters = _letters(rng, rng.randint(1, 3))
        return rng.choice([f"{letters}-{_digits(rng, rng.randint(2, 5))}", f"{letters}{_digits(rng, rng.randint(3, 8))}",
                           f"{letters}-{rng.choice(string.ascii_uppercase)}-{_digits(rng, 4)}"])
    if k < 0.9:
        return gen_date(c, rng, target)
    return gen_en_words(c, rng, max(3, min(target, 16))).upper()


def gen_spec(c: Corpus, rng: random.Random, target: int) -> str:
    """A labelled line of Chinese print, as product pages, labels, forms and worksheets set it: a label in
    【】 or followed by a full-width colon, then its value; or a numbered item (一、 1. （1）). The wide
    brackets and the full-width colon right after a hanzi are rare in running text, so words alone seldom
    show them where such lines put them: at the line's start, after the label."""
    label = ""
    for w in _pick_words(c, "zh", rng, rng.randint(2, 5), ""):
        if len(label) + len(w) > 6:
            break
        if all("\u4e00" <= ch <= "\u9fff" for ch in w):  # a hanzi label (the zh word list has some Latin)
            label += w
    label = label or "名称"
    value = _spec_value(c, rng, max(2, target - len(label) - 3))
    k = rng.random()
    if k < 0.4:
        return f"【{label}】{rng.choice(['：', '：', ':', ''])}{value}"
    if k < 0.65:
        return f"{label}{rng.choice(['：', '：', ':'])}{value}"
    n = rng.randint(1, 10)
    head = rng.choice([f"{ZH_ORDINALS[n - 1]}、", f"{n}.", f"{n}、", f"（{n}）", f"({n})", f"第{ZH_ORDINALS[n - 1]}条 "])
    score = rng.random() < 0.3
    text = head + gen_zh_words(c, rng, max(2, target - len(head) - (7 if score else 0)))
    if score:  # room kept for it, so the line's length limit does not cut it off
        text = text.rstrip(ZH_PUNCT) + rng.choice(["。", ""]) + f"（{rng.choice(['共', ''])}{rng.randint(2, 40)}分）"
    return text


Generator = Callable[[Corpus, random.Random, int], str]
GENERATORS: dict[str, Generator] = {
    "zh_words": gen_zh_words,
    "en_words": gen_en_words,
    "fields": gen_fields,
    "mixed": gen_mixed,
    "charset_random": gen_charset_random,
    "date": gen_date,
    "amount": gen_amount,
    "phone": gen_phone,
    "id_number": gen_id_number,
    "number": gen_number,
    "plate": gen_plate,
    "receipt": gen_receipt,
    "sign": gen_sign,
    "prose": gen_prose,
    "ui": gen_ui,
    "spec": gen_spec,
}
