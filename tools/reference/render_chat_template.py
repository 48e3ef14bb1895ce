#!/usr/bin/python3
"""Reference renderer for chat templates: real Jinja2, set up the way transformers'
apply_chat_template sets it up, with the request preprocessing SGLang applies before it.

It is the oracle for dsserve's native V3.1 / V3.2-Exp template renderer (src/chat/).
Run it with Debian's /usr/bin/python3 (python3-jinja2); the pyenv python3 lacks jinja2.

  render_chat_template.py --template FILE --request REQ.json        -> prompt on stdout
  render_chat_template.py --template FILE --cases DIR --id NAME     -> writes DIR/*.NAME.prompt.txt
  render_chat_template.py --template FILE --requests R1.json ... --out-dir D
                                                                    -> D/K.prompt (or D/K.error) for request K
                                                                       (one interpreter for many requests)

FILE is either a .jinja file (loaded like `sglang --chat-template FILE.jinja`: surrounding
newlines stripped, the two characters backslash-n turned into a newline) or a
tokenizer_config.json (its "chat_template" string is used as is).
Exit status 3 with the message on stderr when the template itself raises an error.
"""
import argparse
import json
import pathlib
import sys

import datetime

import jinja2
from jinja2.ext import Extension, loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

BOS = "<｜begin▁of▁sentence｜>"
EOS = "<｜end▁of▁sentence｜>"


def load_template(path):
    p = pathlib.Path(path)
    text = p.read_text(encoding="utf-8")
    if p.suffix == ".json":
        return json.loads(text)["chat_template"]
    # sglang TemplateManager._load_jinja_template
    return text.strip("\n").replace("\\n", "\n")


class GenerationTag(Extension):
    """transformers' AssistantTracker without the tracking: {% generation %} renders its body."""
    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return jinja2.nodes.Scope(body).set_lineno(lineno)


def make_env():
    # Same settings and extra filters/globals as transformers' chat template compiler.
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    def strftime_now(format):
        return datetime.datetime.now().strftime(format)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[GenerationTag, loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def flatten_content(content):
    # SGLang, "string" content format: text parts joined by one space; null -> "".
    if content is None:
        return ""
    if isinstance(content, list):
        return " ".join(part["text"] for part in content
                        if isinstance(part, dict) and part.get("type") == "text")
    return content


def preprocess(request):
    """OpenAI request -> (messages, tools, kwargs, assistant_prefix) as SGLang hands them
    to apply_chat_template: null-valued keys dropped, content flattened to a string."""
    messages = []
    for msg in request["messages"]:
        m = {k: v for k, v in msg.items() if v is not None}
        m["content"] = flatten_content(msg.get("content"))
        messages.append(m)
    tools = request.get("tools")
    if not tools or request.get("tool_choice") == "none":
        tools = None
    kwargs = dict(request.get("chat_template_kwargs") or {})
    prefix = ""
    if request.get("continue_final_message") and messages and messages[-1]["role"] == "assistant":
        prefix = messages.pop()["content"]
    return messages, tools, kwargs, prefix


def render(template_src, request):
    messages, tools, kwargs, prefix = preprocess(request)
    template = make_env().from_string(template_src)
    ctx = dict(kwargs)
    ctx.update(messages=messages, tools=tools,
               add_generation_prompt=request.get("add_generation_prompt", True),
               bos_token=BOS, eos_token=EOS, pad_token=EOS, unk_token=None)
    return template.render(**ctx) + prefix


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--template", required=True)
    ap.add_argument("--request")
    ap.add_argument("--cases", help="directory of NAME.request.json files")
    ap.add_argument("--id", help="template id used in the output file names (with --cases)")
    ap.add_argument("--requests", nargs="+", help="request files rendered one after the other (with --out-dir)")
    ap.add_argument("--out-dir", help="where --requests writes K.prompt, or K.error when the template raises")
    args = ap.parse_args()
    src = load_template(args.template)
    if args.requests:
        out_dir = pathlib.Path(args.out_dir)
        for k, path in enumerate(args.requests):
            req = json.loads(pathlib.Path(path).read_text(encoding="utf-8"))
            try:
                (out_dir / f"{k}.prompt").write_bytes(render(src, req).encode("utf-8"))
            except (jinja2.TemplateError, TypeError, ValueError, KeyError, IndexError, AttributeError) as e:
                (out_dir / f"{k}.error").write_text(f"template error: {e}", encoding="utf-8")
        return
    if args.request:
        req = json.loads(pathlib.Path(args.request).read_text(encoding="utf-8"))
        try:
            out = render(src, req)
        except (jinja2.TemplateError, TypeError, ValueError, KeyError, IndexError, AttributeError) as e:
            print(f"template error: {e}", file=sys.stderr)
            sys.exit(3)
        sys.stdout.buffer.write(out.encode("utf-8"))
        return
    for req_path in sorted(pathlib.Path(args.cases).glob("*.request.json")):
        name = req_path.name[: -len(".request.json")]
        req = json.loads(req_path.read_text(encoding="utf-8"))
        out_path = req_path.with_name(f"{name}.{args.id}.prompt.txt")
        try:
            out_path.write_bytes(render(src, req).encode("utf-8"))
        except (jinja2.TemplateError, TypeError) as e:
            print(f"{name}: template error: {e}", file=sys.stderr)


if __name__ == "__main__":
    main()
