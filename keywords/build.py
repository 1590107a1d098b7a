"""Build the imagery vocabulary, keywords/vocabulary.txt, from curated lists and corpus counts.

The vocabulary is the list of classical images (意象) Chinese-CLIP chooses from when it looks at
a photo. It is made of two parts, both reviewable plain text under keywords/:

1. curated/<category>.txt — hand-curated words, one a line (`#` starts a comment). Every curated
   word is in the vocabulary, under the category of its file.
2. Frequent corpus words. counts.tsv holds `WORD<TAB>COUNT<TAB>SOURCE` rows counted from the THU
   Chinese Classical Poetry Corpus (CCPC): SOURCE `keyword` counts the poems' `keywords` field,
   SOURCE `jieba` counts jieba's segments of the poem lines. rules.tsv says which frequent words
   are admitted and into which category (see `Rules` below and keywords/README.md).

Usage (run from the repository root; stdlib only, plus jieba for --count):

    python keywords/build.py                  # curated + rules + counts.tsv -> vocabulary.txt
    python keywords/build.py --candidates     # list the corpus words the rules admit (review)
    python keywords/build.py --count DIR      # recount CCPC files DIR/ccpc_*_v1.0.json -> counts.tsv

The build is deterministic: the same curated lists, rules and counts give the same file, byte
for byte (tests/test_vocabulary.py checks the committed vocabulary.txt is the build's output).
No corpus text is written anywhere, only word counts.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
CURATED = HERE / "curated"
RULES = HERE / "rules.tsv"
COUNTS = HERE / "counts.tsv"
VOCABULARY = HERE / "vocabulary.txt"

# The nine categories, in the order they appear in vocabulary.txt.
CATEGORIES = ("天象", "时令", "山水", "草木", "禽兽虫鱼", "建筑器物", "人物", "色彩光影", "情思")

# Size limits of the built vocabulary (the issue asks for 1,000-3,000 entries).
MIN_SIZE, MAX_SIZE = 1000, 3000

# Corpus words: two to four characters (single characters are curated by hand).
CORPUS_WORD = re.compile(r"^[\u4e00-\u9fff]{2,4}$")
# Curated words: what poemgen.keywords.Vocabulary.parse accepts (1-8 CJK characters).
CURATED_WORD = re.compile(r"^[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]{1,8}$")

# Common traditional-only characters (their simplified forms differ). The vocabulary is in
# simplified characters: a curated word holding one of these is an error, a corpus word is
# skipped. Characters that are also valid in simplified text (e.g. 乾 in 乾坤) are not listed.
TRADITIONAL = set(
    "雲風霧靄陽陰夢憶憂離歸鄉親愛戀憐悵淚聲響鐘樓臺閣橋門闕廟簾燈燭爐鏡劍箏簫詩書畫筆硯紙"
    "舊樹葉蘭萬蓮楊棗藥蘆葦蘋蕭蕪薔蘚鶴鷺鷗鶯鴻鵲鴉鷹鵑鴛鴦鷓鴣鵝鳥雞驢龍龜魚蝦蟬螢蟲蠶"
    "嶺巒崗島嶼灣濤澗溝淺濃滿湧瀾漁槳艦艙雙獨遠邊關塵煙處與無為來時東長開見頭間過發後覺"
    "應們個裡麼實對從進動現會學國話說語讀認識紅綠藍黃銀銅鐵錦繡絲線紋輕陳暉曉晝曆歲節燒"
    "燦爛爍點豔艷顏亂斷殘盡飛靜淨寧閑閒涼凍幾麥穀莊園圓團蘇楓棲樣機橫檻欄櫳樑氣漢灑瀟溫"
    "熱爭獵獸瑤環瓊異當疊盞盤眾禪禮種稱窮窺筍箋範築籠籬糧紗紛細終絕經維綿緒緣縈縱總"
    "織繞繩纏羅習聞聯聖臉臨興舉莖華蒼蓋蔭蕩薦號衛衝補裝視覽觀觸記訪詞詠誰調論謝譜變讓豐"
    "賞賦贈跡蹤躍車軒軟載輝輪轉農迴遊運達遲選遺鄰釣針鈴鉤鋒錢錯鎖鎮閃閉問閨闊闌陣隨隱險"
    "雖雜難電靈韻頂項順須頌領題額願顧飄飯飲館騎驚驛髮鬆鬥鱗鳴鳳齊齒岡塢橫滄瀰漣屢戲")


# ── 1. Counting CCPC ─────────────────────────────────────────────────────────────────────────

def count_corpus(folder: str | Path) -> tuple[Counter, list[str]]:
    """Count a CCPC folder: ({(word, source): count}, the split files read, sorted).

    Every `ccpc_*_v1.0.json` file is read (one JSON object a line; `content` holds the lines
    joined by `|`, `keywords` space-separated keywords). SOURCE `keyword` counts each keyword of
    the `keywords` field; SOURCE `jieba` counts jieba's segments of each line (dictionary words
    only, HMM off, so that unknown character runs are not guessed into words). Only words of
    2-4 Chinese characters are counted.
    """
    import jieba  # needed only for counting; building the vocabulary is stdlib only

    jieba.setLogLevel(60)  # silence "Building prefix dict ..." on stderr
    files = sorted(Path(folder).glob("ccpc_*_v1.0.json"))
    if not files:
        raise SystemExit(f"{folder}: no ccpc_*_v1.0.json files found; pass the folder holding "
                         "the CCPC splits (THUNLP-AIPoet/Datasets, folder CCPC/)")
    counts: Counter = Counter()
    for path in files:
        with path.open(encoding="utf-8") as f:
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    poem = json.loads(line)
                except json.JSONDecodeError as e:
                    raise SystemExit(f"{path}:{number}: not a JSON object ({e})") from None
                for word in str(poem.get("keywords", "")).split():
                    if CORPUS_WORD.match(word):
                        counts[word, "keyword"] += 1
                for verse in str(poem.get("content", "")).split("|"):
                    for word in jieba.lcut(verse.strip(), HMM=False):
                        if CORPUS_WORD.match(word):
                            counts[word, "jieba"] += 1
    return counts, [path.name for path in files]


def write_counts(counts: Counter, splits: list[str], path: str | Path = COUNTS,
                 keep: int = 2) -> int:
    """Write counts.tsv: rows seen at least `keep` times, by count, then word, then source."""
    rows = sorted(((w, n, s) for (w, s), n in counts.items() if n >= keep),
                  key=lambda row: (-row[1], row[0], row[2]))
    header = [
        "# Word counts from the THU Chinese Classical Poetry Corpus (CCPC v1.0), written by",
        "# keywords/build.py --count. Only counts are stored here, no corpus text.",
        f"# Splits counted: {', '.join(splits)}",
        f"# Rows: WORD<TAB>COUNT<TAB>SOURCE, words of 2-4 characters seen at least {keep} times;",
        "# SOURCE keyword = the poems' `keywords` field, jieba = jieba segments of poem lines",
        "# (jieba.lcut(line, HMM=False)).",
        "# Regenerate with the full corpus (train + valid + test from THUNLP-AIPoet/Datasets, CCPC/):",
        "#   python keywords/build.py --count PATH/TO/CCPC && python keywords/build.py",
    ]
    text = "\n".join(header + [f"{w}\t{n}\t{s}" for w, n, s in rows]) + "\n"
    Path(path).write_text(text, encoding="utf-8")
    return len(rows)


def read_counts(path: str | Path = COUNTS) -> Counter:
    """A word's count: the sum of its rows over all sources."""
    totals: Counter = Counter()
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) != 3 or not fields[1].isdigit():
            raise SystemExit(f"{path}:{number}: expected WORD<TAB>COUNT<TAB>SOURCE")
        totals[fields[0]] += int(fields[1])
    return totals


# ── 2. Curated lists and rules ───────────────────────────────────────────────────────────────

def read_list(path: Path) -> list[str]:
    """Words of a curated list: one a line; `#` starts a comment (also after a word)."""
    words = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        word = line.split("#", 1)[0].strip()
        if not word:
            continue
        if not CURATED_WORD.match(word):
            raise SystemExit(f"{path}:{number}: {word!r} is not 1-8 Chinese characters")
        if TRADITIONAL & set(word):
            raise SystemExit(f"{path}:{number}: {word!r} holds traditional characters "
                             f"{''.join(sorted(TRADITIONAL & set(word)))}; use simplified ones")
        words.append(word)
    return words


def read_curated(folder: str | Path = CURATED) -> dict[str, list[str]]:
    """{category: words} from curated/<category>.txt; a word may appear only once overall."""
    folder = Path(folder)
    found = {path.stem for path in folder.glob("*.txt")}
    if found != set(CATEGORIES):
        raise SystemExit(f"{folder}: expected one file per category {', '.join(CATEGORIES)}; "
                         f"missing {sorted(set(CATEGORIES) - found)}, "
                         f"unknown {sorted(found - set(CATEGORIES))}")
    curated, seen = {}, {}
    for category in CATEGORIES:
        curated[category] = read_list(folder / f"{category}.txt")
        for word in curated[category]:
            if word in seen:
                raise SystemExit(f"{folder}: {word!r} is listed in both {seen[word]} and "
                                 f"{category}")
            seen[word] = category
    return curated


@dataclass
class Rules:
    """How frequent corpus words are admitted (parsed from rules.tsv).

    A corpus word is admitted when its count is at least `min_count`, it has 2-4 Chinese
    characters, it is neither curated nor stoplisted, it is not one character repeated (叠字 such
    as 青青, 寂寂 describe, they name nothing), it holds no `stop_chars` character and no
    traditional character, and its LAST character is a key character: the head of a Chinese
    compound is its last character (秋月 is a moon, 月色 a colour, 愁云 a cloud, 春愁 a feeling),
    and the key's category is the word's. A word whose last character is not a key (花开, 山中,
    归去: verb and place phrases) is left out. Each category then keeps at most `per_category`
    corpus words, the most frequent.
    """

    min_count: int = 0
    per_category: int = 0
    keys: dict[str, str] = field(default_factory=dict)  # character -> category
    stop_words: set[str] = field(default_factory=set)
    stop_chars: set[str] = field(default_factory=set)

    def category(self, word: str) -> str | None:
        return self.keys.get(word[-1])


def read_rules(path: str | Path = RULES) -> Rules:
    """Parse rules.tsv: `KIND<TAB>VALUES[<TAB>CATEGORY]` rows; `#` comment lines."""
    rules = Rules()
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        kind, *fields = [f.strip() for f in line.split("\t")]
        where = f"{path}:{number}"
        if kind in ("min_count", "per_category") and len(fields) == 1 and fields[0].isdigit():
            setattr(rules, kind, int(fields[0]))
        elif kind == "key" and len(fields) == 2 and fields[1] in CATEGORIES:
            for char in fields[0].split():
                if len(char) != 1 or char in rules.keys:
                    raise SystemExit(f"{where}: key {char!r} is not one character or repeats")
                rules.keys[char] = fields[1]
        elif kind == "stop" and len(fields) == 1:
            rules.stop_words.update(fields[0].split())
        elif kind == "stop_chars" and len(fields) == 1:
            rules.stop_chars.update(fields[0].replace(" ", ""))
        else:
            raise SystemExit(f"{where}: expected min_count N, per_category N, "
                             f"key CHARS CATEGORY, stop WORDS or stop_chars CHARS; got {line!r}")
    if rules.min_count < 1 or rules.per_category < 1:
        raise SystemExit(f"{path}: min_count and per_category must be set (>= 1)")
    return rules


# ── 3. Building vocabulary.txt ───────────────────────────────────────────────────────────────

def candidates(curated: dict[str, list[str]], rules: Rules,
               counts: Counter) -> dict[str, list[str]]:
    """{category: corpus words the rules admit}, most frequent first (then by code point),
    before the per-category cap."""
    taken = {word for words in curated.values() for word in words}
    found: dict[str, list[str]] = {category: [] for category in CATEGORIES}
    for word, count in counts.items():
        if (count < rules.min_count or word in taken or word in rules.stop_words
                or not CORPUS_WORD.match(word) or len(set(word)) == 1
                or rules.stop_chars & set(word) or TRADITIONAL & set(word)):
            continue
        category = rules.category(word)
        if category:
            found[category].append(word)
    return {category: sorted(words, key=lambda w: (-counts[w], w))
            for category, words in found.items()}


def select(curated: dict[str, list[str]], rules: Rules,
           counts: Counter) -> dict[str, list[tuple[str, bool]]]:
    """{category: [(word, is_curated)]}: the curated words plus the `per_category` most frequent
    admitted corpus words, sorted by count (most frequent first), then by code point."""
    admitted = candidates(curated, rules, counts)
    chosen = {}
    for category in CATEGORIES:
        entries = ([(w, True) for w in curated[category]]
                   + [(w, False) for w in admitted[category][:rules.per_category]])
        chosen[category] = sorted(entries, key=lambda entry: (-counts[entry[0]], entry[0]))
    return chosen


def build(curated_dir: str | Path = CURATED, rules_path: str | Path = RULES,
          counts_path: str | Path = COUNTS) -> str:
    """The text of vocabulary.txt (deterministic)."""
    curated = read_curated(curated_dir)
    rules = read_rules(rules_path)
    counts = read_counts(counts_path)
    chosen = select(curated, rules, counts)
    total = sum(len(entries) for entries in chosen.values())
    if not MIN_SIZE <= total <= MAX_SIZE:
        raise SystemExit(f"the vocabulary would hold {total} words, outside {MIN_SIZE}-"
                         f"{MAX_SIZE}: change min_count / per_category in {RULES.name}")
    splits = next((line[len("# Splits counted: "):] for line in
                   Path(counts_path).read_text(encoding="utf-8").splitlines()
                   if line.startswith("# Splits counted: ")), "unknown")
    n_curated = sum(len(words) for words in curated.values())
    lines = [
        "# poemgen 意象词表: classical imagery a photo can show or suggest, Chinese-CLIP's labels.",
        "# GENERATED by keywords/build.py; do not edit by hand. Edit keywords/curated/*.txt or",
        "# keywords/rules.tsv and run `python keywords/build.py` (see keywords/README.md).",
        f"# {total} words: {n_curated} curated + {total - n_curated} frequent CCPC words "
        f"(count >= {rules.min_count}, at most {rules.per_category} a category;",
        f"# counts from {splits}).",
        "# Format: UTF-8, one WORD<TAB>CATEGORY a line, '#' comment lines. Categories:",
        "# " + " ".join(CATEGORIES) + ". Sorted by category, then corpus count, then code point.",
    ]
    for category in CATEGORIES:
        entries = chosen[category]
        n_cur = sum(1 for _, is_curated in entries if is_curated)
        lines += ["", f"# ── {category}: {len(entries)} ({n_cur} curated + "
                      f"{len(entries) - n_cur} corpus) ──"]
        lines += [f"{word}\t{category}" for word, _ in entries]
    return "\n".join(lines) + "\n"


def unknown_to(tokenizer, words: list[str]) -> list[str]:
    """The words that `tokenizer` (a poet's) can only spell with its unknown token."""
    unk = tokenizer.unk_token_id
    return [w for w, ids in zip(words, tokenizer(words, add_special_tokens=False).input_ids)
            if unk in ids]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", metavar="DIR",
                        help="recount the CCPC splits in DIR into counts.tsv (needs jieba)")
    parser.add_argument("--keep", type=int, default=2, metavar="N",
                        help="with --count: keep words seen at least N times (default 2)")
    parser.add_argument("--candidates", action="store_true",
                        help="list the corpus words the rules admit, with counts (for reviewing "
                             "rules.tsv); words past the per-category cap are marked")
    parser.add_argument("--check-tokenizer", metavar="MODEL",
                        help="list the vocabulary's words a poet's tokenizer (Hub id or folder, "
                             "e.g. Langboat/mengzi-t5-base) cannot spell; exit 1 if any")
    parser.add_argument("--output", default=str(VOCABULARY), metavar="FILE",
                        help="where to write the vocabulary (default keywords/vocabulary.txt)")
    args = parser.parse_args(argv)
    if args.count:
        counts, splits = count_corpus(args.count)
        rows = write_counts(counts, splits, COUNTS, args.keep)
        print(f"{COUNTS}: {rows} rows from {', '.join(splits)}")
        return 0
    if args.check_tokenizer:
        from transformers import AutoTokenizer

        words = [line.split("\t")[0] for line in VOCABULARY.read_text("utf-8").splitlines()
                 if line and not line.startswith("#")]
        missing = unknown_to(AutoTokenizer.from_pretrained(args.check_tokenizer), words)
        print(f"{len(words) - len(missing)} of {len(words)} words known to {args.check_tokenizer}"
              + (f"; unknown: {' '.join(missing)}" if missing else ""))
        return 1 if missing else 0
    if args.candidates:
        curated, rules, counts = read_curated(), read_rules(), read_counts()
        for category, words in candidates(curated, rules, counts).items():
            kept = words[:rules.per_category]
            print(f"## {category}: {len(words)} admitted, {len(kept)} kept")
            print(" ".join(f"{w}{counts[w]}" for w in kept))
            if words[len(kept):]:
                print("past the cap:", " ".join(f"{w}{counts[w]}" for w in words[len(kept):]))
        unused = sorted(w for w in rules.stop_words
                        if counts[w] < rules.min_count or not rules.category(w))
        if unused:
            print("stop words that no rule would admit anyway:", " ".join(unused))
        return 0
    text = build()
    Path(args.output).write_text(text, encoding="utf-8")
    sizes = Counter(line.split("\t")[1] for line in text.splitlines()
                    if line and not line.startswith("#"))
    print(f"{args.output}: {sum(sizes.values())} words; "
          + ", ".join(f"{c} {sizes[c]}" for c in CATEGORIES))
    return 0


if __name__ == "__main__":
    sys.exit(main())
