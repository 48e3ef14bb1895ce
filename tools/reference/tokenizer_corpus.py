#!/usr/bin/env python3
"""Writes the tokenizer exactness corpus (JSON list of strings) to stdout.

Deterministic (fixed seed), no dependencies. The corpus mixes the scripts and edge cases the
DeepSeek pre-tokenizer regexes care about: digits, CJK/kana runs, letters with marks,
punctuation runs, whitespace runs (tabs, CR/LF, U+3000), emoji ZWJ sequences, special tokens
written inside text, invalid-looking but valid Unicode, empty and very long strings.
"""
import json
import random
import sys

rng = random.Random(20261124)

SPECIALS = ["<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>",
            "<｜tool▁calls▁begin｜>", "<｜tool▁sep｜>", "<｜▁pad▁｜>", "<｜fim▁hole｜>", "<|EOT|>",
            "<｜place▁holder▁no▁17｜>"]
SAMPLES = {
    "en": ["The quick brown fox jumps over the lazy dog.", "Hello, world!", "It's 5 o'clock somewhere; isn't it?",
           "e.g. U.S.A. vs. UK", "don't won't can't I'm you're they'll", "CamelCaseIdentifierName snake_case_name"],
    "code": ["def f(x):\n    return x**2 + 1\n", "for (int i = 0; i < n; ++i) {\n\tsum += a[i];\n}\n",
             "#include <stdio.h>\nint main(){printf(\"%d\\n\", 42);}", "const x = {a: [1,2,3], 'b': null};",
             "SELECT * FROM users WHERE id = 10 AND name LIKE '%bob%';", "    if x == 1:\n        pass\n\n\n",
             "fn main() -> Result<(), Box<dyn Error>> { Ok(()) }", "<div class=\"a\">&nbsp;</div>",
             "$ echo $HOME && ls -la | grep '^d'", "x<<=2; y>>=3; z!==w; a?.b ?? c"],
    "zh": ["我爱北京天安门", "深度求索是一家人工智能公司。", "今天天气很好，我们去公园散步吧！", "明天杭州和北京的天气怎么样？",
           "中文English混合text测试123", "《红楼梦》是中国古典小说。"],
    "ja": ["こんにちは、世界！", "カタカナとひらがなと漢字", "東京タワーは333メートルです。", "ｶﾀｶﾅ半角テスト"],
    "ko": ["안녕하세요 세계", "한국어 문장입니다. 감사합니다!", "대한민국 서울특별시"],
    "ar": ["مرحبا بالعالم", "اللغة العربية جميلة جداً", "٠١٢٣٤٥٦٧٨٩ أرقام"],
    "hi": ["नमस्ते दुनिया", "हिन्दी भाषा में वाक्य।", "क्षत्रिय ज्ञान"],
    "th": ["สวัสดีชาวโลก", "ภาษาไทยไม่มีช่องว่างระหว่างคำ"],
    "ru": ["Привет, мир!", "Съешь же ещё этих мягких французских булок."],
    "misc": ["Ελληνικά γράμματα", "עברית טקסט", "Tiếng Việt có dấu", "Ünïcödé àccénts çà et là", "ß ẞ ﬁ ﬂ Å Å",
             "e\u0301 vs é (combining)", "Zalgo: Z\u0351\u0352a\u0353l\u0354g\u0355o"],
    "emoji": ["👍🏽", "👨‍👩‍👧‍👦 family", "🏳️‍🌈 flag", "❤️‍🔥", "🇯🇵🇺🇸", "😀😃😄😁", "a👩🏻‍💻b", "🧑‍🤝‍🧑"],
    "digits": ["1234567890", "3.14159265358979", "1,000,000", "2026-11-24T08:30:00Z", "0x7fffffff",
               "٣٤٥", "１２３４５", "12 345 678", "-42.5e-10", "v1.2.3-rc4"],
    "ws": ["  leading", "trailing   ", "a\tb\t\tc", "line1\r\nline2\r\n", "\n\n\n", "   \n  \n", "\u3000全角空格\u3000",
           "x \u00a0y", "tab\t\n\tnewline", " ", "\t", "\r", "a  b   c    d"],
    "punct": ["!!!", "...???", "--==>>", "(((nested)))", "\"quoted\" 'single'", "« guillemets » „Anführung“",
              "…—–", "@#$%^&*", "a.b,c;d:e", "[x]{y}<z>"],
}


def specials_mix():
    out = []
    for s in SPECIALS:
        out.append(s)
        out.append(f"before{s}after")
        out.append(f"text {s} text")
    out.append("".join(SPECIALS))
    out.append("<｜User｜>hello<｜Assistant｜></think>Hello! I am DeepSeek.<｜end▁of▁sentence｜>")
    out.append("<｜begin▁of▁sentence｜><｜User｜>hello<｜Assistant｜></think>Hello! I am DeepSeek."
               "<｜end▁of▁sentence｜><｜User｜>1+1=?<｜Assistant｜><think>")
    out.append("<think>reasoning</think>answer")
    out.append("<｜User｜ not a special")
    return out


def random_mix(n):
    pools = [p for k, v in SAMPLES.items() for p in v]
    seps = ["", " ", "\n", "\t", "  ", "\r\n", "\u3000"]
    out = []
    for _ in range(n):
        k = rng.randint(2, 6)
        out.append("".join(rng.choice(pools) + rng.choice(seps) for _ in range(k)))
    return out


def random_unicode(n):
    ranges = [(0x20, 0x7e), (0xa0, 0x24f), (0x370, 0x3ff), (0x400, 0x4ff), (0x590, 0x6ff), (0x900, 0x97f),
              (0xe00, 0xe7f), (0x3040, 0x30ff), (0x4e00, 0x9fff), (0xac00, 0xd7a3), (0x1f300, 0x1f64f),
              (0x2000, 0x206f), (0xff00, 0xffef), (0x10000, 0x1007f), (0x20000, 0x2000f)]
    out = []
    for _ in range(n):
        length = rng.randint(1, 40)
        chars = []
        for _ in range(length):
            lo, hi = rng.choice(ranges)
            chars.append(chr(rng.randint(lo, hi)))
        out.append("".join(chars))
    return out


def main():
    corpus = [""]
    for v in SAMPLES.values():
        corpus.extend(v)
    corpus.extend(specials_mix())
    corpus.extend(random_mix(150))
    corpus.extend(random_unicode(80))
    corpus.append("9" * 1000)
    corpus.append(" " * 500 + "x")
    corpus.append("\n" * 300)
    corpus.append("a" * 5000)
    corpus.append("長" * 3000)
    corpus.append(("The quick brown fox. 深度求索 123456 👍🏽\n") * 400)
    json.dump(corpus, sys.stdout, ensure_ascii=False, indent=0)
    print(f"{len(corpus)} texts", file=sys.stderr)


if __name__ == "__main__":
    main()
