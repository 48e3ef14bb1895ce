#!/usr/bin/env python3
"""Second oracle for the V3.1 / V3.2-Exp chat-template fixtures: transformers' own
apply_chat_template (run on the GPU machine image, which has transformers 5.17).

usage: chat_template_transformers.py TOKENIZER_JSON
Renders every tests/fixtures/chat/v31_cases/*.request.json with each template (after the same
SGLang-style request preprocessing as render_chat_template.py) and compares with the committed
*.prompt.txt fixtures byte for byte. Prints one line per case; exit 1 on any mismatch.
"""
import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from render_chat_template import load_template, preprocess  # noqa: E402
from transformers import PreTrainedTokenizerFast  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIX = ROOT / "tests/fixtures/chat"
TEMPLATES = {
    "deepseek-v32-exp": FIX / "checkpoints/v32exp/tokenizer_config.json",
    "sglang-deepseekv31": FIX / "templates/tool_chat_template_deepseekv31.jinja",
    "sglang-deepseekv32": FIX / "templates/tool_chat_template_deepseekv32.jinja",
}

tok = PreTrainedTokenizerFast(tokenizer_file=sys.argv[1], bos_token="<｜begin▁of▁sentence｜>",
                              eos_token="<｜end▁of▁sentence｜>", pad_token="<｜end▁of▁sentence｜>")
bad = checked = 0
for tid, tpath in TEMPLATES.items():
    src = load_template(tpath)
    for req_path in sorted((FIX / "v31_cases").glob("*.request.json")):
        name = req_path.name[: -len(".request.json")]
        want_path = req_path.with_name(f"{name}.{tid}.prompt.txt")
        if not want_path.exists():
            continue  # a case the template itself rejects
        req = json.loads(req_path.read_text(encoding="utf-8"))
        messages, tools, kwargs, prefix = preprocess(req)
        got = tok.apply_chat_template(messages, tools=tools, chat_template=src, tokenize=False,
                                      add_generation_prompt=req.get("add_generation_prompt", True), **kwargs) + prefix
        ok = got == want_path.read_text(encoding="utf-8")
        checked += 1
        bad += not ok
        print(f"{'OK  ' if ok else 'DIFF'} {tid} {name}")
print(f"transformers {__import__('transformers').__version__}: {checked - bad}/{checked} fixtures identical")
sys.exit(1 if bad else 0)
