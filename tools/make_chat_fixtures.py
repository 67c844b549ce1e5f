#!/usr/bin/env python3
"""Writes tests/fixtures/chat/expected.json: what HF transformers' apply_chat_template gives for
each chat template in tests/fixtures/chat/templates.json over a set of conversations. The C++
test (tests/model/test_chat_template.cpp) renders every case and compares byte for byte.

    python3 tools/make_chat_fixtures.py [--renderer auto|transformers|jinja2] [--out PATH]

auto (the default) uses transformers when it imports (the reference: run it where transformers
is installed and commit the output), else jinja2 set up as transformers sets it up
(ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks, loopcontrols, its tojson,
raise_exception and strftime_now). The JSON's "renderer" says which one made it.

strftime_now reads a fixed clock (NOW below) so the Llama 3.2 template's date is reproducible;
under transformers the clock is patched in transformers.utils.chat_template_utils and checked,
and if the patch does not take, the cases that read the clock are written as skipped.
"""
import argparse
import datetime
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.normpath(os.path.join(HERE, "..", "tests", "fixtures", "chat"))
NOW = datetime.datetime(2025, 3, 7, 12, 34, 56)  # naive, read as UTC by the C++ test
NOW_EPOCH = int(NOW.replace(tzinfo=datetime.timezone.utc).timestamp())

SYSTEM = {"role": "system", "content": "You are a helpful assistant."}

CONVERSATIONS = {
    "system_user": [SYSTEM, {"role": "user", "content": "What is the capital of France?"}],
    "user_only": [{"role": "user", "content": "Hello!"}],
    "multi_turn": [
        SYSTEM,
        {"role": "user", "content": "Name a prime number."},
        {"role": "assistant", "content": "7 is a prime number."},
        {"role": "user", "content": "And one larger than 100?"},
    ],
    "multi_turn_no_system": [
        {"role": "user", "content": "Hi."},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "Tell me a joke."},
        {"role": "assistant", "content": "Why did the chicken cross the road?"},
        {"role": "user", "content": "Why?"},
    ],
    "assistant_last": [
        {"role": "user", "content": "Count to three."},
        {"role": "assistant", "content": "One, two,"},
    ],
    "unicode": [
        {"role": "system", "content": "Tu es un assistant. 日本語で答えて ✓ 🙂"},
        {"role": "user", "content": "\u00a0\u3000 Ça va? — «oui» \u2028\n"},
        {"role": "assistant", "content": "\u200bJa, ça va 😀\u202f"},
        {"role": "user", "content": "Ελληνικά, русский, עברית, العربية"},
    ],
    "whitespace_and_braces": [
        {"role": "system", "content": "\n\n  Keep {{ this }} and {% that %} as text.\t \n"},
        {"role": "user", "content": "line one\r\nline two\n\n\tindented\n   "},
    ],
    "empty_contents": [
        {"role": "system", "content": ""},
        {"role": "user", "content": ""},
    ],
    "tool_result": [
        {"role": "user", "content": "What is the weather in Paris?"},
        {"role": "assistant", "content": "Let me check."},
        {"role": "tool", "content": "{\"temperature\": \"22°C\", \"note\": \"a \\\"quoted\\\" word\\nand a newline\"}"},
        {"role": "ipython", "content": "plain text result"},
    ],
    "long_system_document": [
        {"role": "system", "content": "Read the document and answer.\n\n" + "\n".join(
            f"Paragraph {i}: the quick brown fox jumps over the lazy dog {i * i} times." for i in range(40))},
        {"role": "user", "content": "How many times does the fox jump in paragraph 12?"},
    ],
}

DATE_STRINGS = [None, "26 Jan 2025"]

# The Jinja subset's unit cases (jinja_cases.json): each source rendered with JINJA_CONTEXT, as
# apply_chat_template would render it (the context holds what transformers passes too).
JINJA_CONTEXT = {
    "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
    "tools": None, "documents": None, "add_generation_prompt": False, "bos_token": "<s>", "eos_token": "</s>",
    "d": {"a": 1, "b": [1, 2]}, "s": "  h\u00e9llo w\u00f6rld  ", "n": 7, "f": 2.5, "t": True, "z": None,
}
JINJA_CASES = [  # every construct the subset has, and errors both must raise
    # whitespace: trim_blocks, lstrip_blocks, - and + markers, comments, newlines
    "{% if true %}\n  yes\n{% endif %}\nafter",
    "  {% if true %}x{% endif %}\n  {{ 'v' }}\n  {%- if true %} y{% endif %}\n",
    "a {%- if true %} b {% endif -%} c",
    "a {%+ if true %}b{% endif +%}\nc\n  {%+ if true %}d{% endif %}",
    "{# c #}\nz\n  {#- c -#}  z\n  {# c #}\nw",
    "line\r\nnext\rlast\n",
    "keep two\n\n",
    "{{ 'a' -}}   \n  b {{- 'c' }}",
    "{% for m in messages %}\n    {{ m.role }}\n{% endfor %}\n",
    "\u3000\u00a0{%- if true %}x{% endif -%}\u2003 y",
    "{%- if true -%}\n\n   x   \n\n{%- endif -%}\n",
    "a\n    {% if false %}\n    hidden\n    {% else %}\n    shown\n    {% endif %}\nb",
    # literals
    "{{ \"tab\\there\" }}|{{ 'it''s' }}|{{ 'q\\'s' }}|{{ '\\u00e9\\x41\\101\\U0001F600' }}|{{ 'a\\qb' }}|{{ 'é\\é' }}",
    "{{ 1_000 }}|{{ 0x1f }}|{{ 0o17 }}|{{ 0b101 }}|{{ 1.5e3 }}|{{ 2.0 }}|{{ 1e-7 }}|{{ 12345678901234567890.0 }}|{{ 1e16 }}|{{ 0.1 + 0.2 }}|{{ 1e400 }}",
    "{{ none }}|{{ true }}|{{ False }}|{{ [1, 'a', none, true, 1.5] }}|{{ {'k': 'v', 'n': [1]} }}|{{ (1,) }}|{{ () }}|{{ (1, 'b') }}",
    "{{ ['it\\'s', \"q\\\"\", 'both\\'\"', '\\n\\t\\\\', '\\x00\\x7f\\u00a0\\u2028\\u200bé\\U0001F600'] }}",
    "{{ 'a' 'b' \"c\" }}",
    # operators and precedence
    "{{ 1 + 2 * 3 }}|{{ (1 + 2) * 3 }}|{{ 7 // 2 }}|{{ -7 // 2 }}|{{ 7 % -3 }}|{{ -7.5 // 2 }}|{{ 7.5 % 2 }}|{{ 2 ** 10 }}|{{ 2 ** -1 }}|{{ -2 ** 2 }}|{{ 1 / 4 }}|{{ 4 / 2 }}|{{ -n }}|{{ +f }}",
    "{{ 'ab' * 3 }}|{{ 2 * [1] }}|{{ 'x' * -1 }}|{{ [1] + [2] }}|{{ 'a' + 'b' }}|{{ 'x' ~ 1 ~ none ~ true ~ z ~ nothing }}|{{ true + 1 }}|{{ f * 2 }}",
    "{{ 1 < 2 < 3 }}|{{ 3 > 2 > 2 }}|{{ 1 == 1.0 }}|{{ true == 1 }}|{{ 'a' < 'b' }}|{{ 'é' > 'z' }}|{{ [1, 2] < [1, 3] }}|{{ d == {'b': [1, 2], 'a': 1} }}|{{ nothing == nothing }}|{{ nothing == none }}|{{ 1 != 2 }}|{{ 2 >= 2 }}|{{ 1 <= 0 }}",
    "{{ 'a' in 'cat' }}|{{ 2 in [1, 2] }}|{{ 'a' in d }}|{{ 'q' not in d }}|{{ 'x' in nothing }}|{{ [1] in [[1]] }}",
    "{{ 0 or 'x' }}|{{ 1 and 'y' }}|{{ none or [] }}|{{ not n }}|{{ not z is none }}|{{ z is not none and n }}|{{ '' and 1 }}",
    "{{ 'y' if n > 5 else 'n' }}|{{ 'y' if n > 10 }}|{{ 'a' if false else 'b' if true else 'c' }}",
    "{{ '<' ~ s | trim ~ '>' }}|{{ '[' + s | trim + ']' }}|{{ -3 | abs }}|{{ (s | trim)[0] }}",
    # attributes, subscripts, slices
    "{{ messages[0].role }}|{{ messages[-1]['content'] }}|{{ messages[5] is defined }}|{{ d.a }}|{{ d['b'][1] }}|{{ d.zz is defined }}|{{ messages.0.role }}|{{ messages[0]['nope'] is defined }}",
    "{{ messages[1:] | length }}|{{ [1,2,3,4,5][::2] }}|{{ [1,2,3,4,5][-2:] }}|{{ [1,2,3][5:] }}|{{ s[2:7] }}|{{ s[::-1] }}|{{ s[3] }}|{{ [1,2,3][::-1] }}|{{ [1,2,3,4][3:0:-2] }}|{{ [1,2,3][-10:2] }}|{{ s[-3:] }}",
    "{{ z.anything }}|{{ 'abc'.x }}|{{ d.b.x }}|{{ d['zz'] }}|{{ s[100] }}",
    # set and scoping
    "{% set x = 5 %}{% for i in [1, 2] %}{{ x }}{% set x = i %}{% endfor %}[{{ x }}]",
    "{% for i in [1, 2] %}{% if i == 2 %}{{ y }}{% endif %}{% set y = i %}{% endfor %}[{{ y }}]",
    "{% if true %}{% set w = 3 %}{% endif %}{{ w }}",
    "{% set ns = namespace(total=0, seen=[]) %}{% for i in range(4) %}{% set ns.total = ns.total + i %}{% set ns.seen = ns.seen + [i] %}{% endfor %}{{ ns.total }} {{ ns.seen }}",
    "{% set block %}Hello {{ messages[0].role }}!{% endset %}[{{ block }}]",
    "{% set messages = messages[1:] %}{{ messages | length }}{% for m in messages %}{{ m.role }}{% endfor %}",
    "{% set t = 1, 2 %}{{ t }}|{% set n = n + 1 %}{{ n }}",
    # for loops
    "{% for m in messages %}{{ loop.index }}{{ loop.index0 }}{{ loop.first }}{{ loop.last }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.length }}{{ loop.previtem is defined }}{{ loop.nextitem is defined }};{% endfor %}",
    "{% for i in [] %}x{% else %}empty{% endfor %}|{% for i in [1] %}x{% else %}empty{% endfor %}|{% for i in nothing %}x{% else %}none{% endfor %}",
    "{% for i in range(10) if i is odd %}{{ loop.index }}:{{ i }}/{{ loop.length }} {% endfor %}",
    "{% for i in range(10) %}{% if i == 2 %}{% continue %}{% endif %}{% if i == 5 %}{% break %}{% endif %}{{ i }}{% endfor %}",
    "{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}|{% for k in d %}{{ k }}{% endfor %}|{% for c in 'hé' %}({{ c }}){% endfor %}",
    "{% for a in [1, 2] %}{% for b in 'xy' %}{{ loop.index }}{{ b }}{% endfor %}{{ loop.index }}{% endfor %}",
    "{% for k, v in d | items %}{{ k }}{{ v }}{% endfor %}|{% for i in range(3) %}{{ loop.previtem }}{{ i }}{{ loop.nextitem }},{% endfor %}",
    # filters
    "[{{ s | trim }}]|[{{ '\\u00a0\\u3000 x \\u2029\\x1c\\x85' | trim }}]|[{{ 'xxhixx' | trim('x') }}]|[{{ z | trim }}]|[{{ nothing | trim }}]|[{{ '\\u200bx\\u200b' | trim }}]",
    "{{ d | tojson }}|{{ messages | tojson }}|{{ 'é\"\\\\\\n\\r\\t\\b\\f\\u0001\\u2028/\\x7f' | tojson }}|{{ 'é😀' | tojson(ensure_ascii=true) }}|{{ {'b': 1, 'a': 2} | tojson(sort_keys=true) }}|{{ [1, 2] | tojson(separators=(',', ':')) }}|{{ none | tojson }}|{{ [1.0, 1e20, 1e-7, true, false, 3] | tojson }}|{{ (1, 2) | tojson }}",
    "{{ d | tojson(indent=4) }}\n{{ [] | tojson(indent=2) }}{{ {} | tojson(indent=2) }}{{ [[]] | tojson(indent=2) }}{{ {'a': 1} | tojson(indent='--') }}{{ [1] | tojson(indent=0) }}",
    "{{ s | length }}|{{ messages | length }}|{{ d | count }}|{{ nothing | length }}|{{ 'é😀' | length }}",
    "{{ nothing | default('dflt') }}|{{ z | default('dflt') }}|{{ z | default('dflt', true) }}|{{ '' | d('e', true) }}|{{ nothing | default }}|{{ n | default(1) }}",
    "{{ 'MiXeD' | upper }}|{{ 'MiXeD' | lower }}|{{ 'a b' | upper }}|{{ 5 | upper }}",  # ASCII: see jinja_text.hpp
    "{{ [1, 'a', none] | join('-') }}|{{ messages | join(', ', attribute='role') }}|{{ 'abc' | join('.') }}|{{ [1, 2] | join }}",
    "{{ [3, 1, 2] | first }}|{{ [3, 1, 2] | last }}|{{ 'hé' | last }}|{{ [] | first is defined }}|{{ 'ab' | list }}|{{ d | list }}|{{ d | items | list }}",
    "{{ ['a', 'code_interpreter', 'b'] | reject('equalto', 'code_interpreter') | join(', ') }}|{{ range(6) | select('odd') | list }}|{{ [0, 1, '', 'x'] | select | list }}|{{ messages | selectattr('role', 'equalto', 'user') | list | length }}|{{ messages | rejectattr('role', 'eq', 'user') | map(attribute='content') | list }}|{{ [1, 2] | map('string') | join }}|{{ messages | map(attribute='nope', default='?') | join }}",
    "{{ '42' | int }}|{{ '4.7' | int }}|{{ 'x' | int }}|{{ 'x' | int(7) }}|{{ 3.9 | int }}|{{ -3.9 | int }}|{{ '0x1A' | int(base=16) }}|{{ ' 2.5 ' | float }}|{{ 'x' | float }}|{{ 3 | float }}|{{ 1 | string }}|{{ none | string }}|{{ true | int }}|{{ '1_000' | int }}",
    "{{ 'aXbX' | replace('X', '-') }}|{{ 'aXbX' | replace('X', '-', 1) }}|{{ 'ab' | replace('', '.') }}|{{ 12 | replace('1', 'one') }}",
    # tests
    "{{ nothing is defined }}|{{ n is defined }}|{{ z is none }}|{{ z is not none }}|{{ 's' is string }}|{{ d is mapping }}|{{ messages is iterable }}|{{ n is number }}|{{ n is integer }}|{{ f is float }}|{{ t is boolean }}|{{ t is true }}|{{ n is odd }}|{{ n is even }}|{{ 9 is divisibleby 3 }}|{{ n is eq 7 }}|{{ n is equalto(8) }}|{{ 1 is in [1] }}|{{ nothing is iterable }}|{{ d is sequence }}|{{ n is gt 3 }}|{{ n is lessthan 3 }}|{{ t is number }}|{{ t is integer }}|{{ n is undefined }}",
    "{{ messages[0].content is mapping or messages[0].content is iterable }}|{{ 5 is iterable }}|{{ z is iterable }}|{{ f is number }}",
    # methods
    "[{{ s.strip() }}]|[{{ s.lstrip() }}]|[{{ s.rstrip() }}]|{{ 'a,b,,c'.split(',') }}|{{ 'a,b,,c'.split(',', 1) }}|{{ ' a  b '.split() }}|{{ '  a b c '.split(none, 1) }}|{{ 'abc'.startswith('ab') }}|{{ 'abc'.endswith(('x', 'c')) }}|{{ 'Hi'.upper() }}|{{ 'Hi'.lower() }}|{{ 'a-b-c'.replace('-', '+', 1) }}|{{ '-'.join(['a', 'b']) }}|{{ 'xxhixx'.strip('x') }}",
    "{{ d.get('a') }}|{{ d.get('zz', 'dflt') }}|{{ d.get('zz') }}|{{ d.keys() | list }}|{{ d.values() | list }}|{{ d.items() | list }}|{{ d['items'] is defined }}",
    # globals
    "{{ range(3) | list }}|{{ range(1, 10, 3) | list }}|{{ range(5, 0, -2) | list }}|{{ range(0) | list }}|{{ dict(a=1, b='x') }}|{{ namespace(a=1).a }}|{{ namespace({'k': 2}).k }}",
    # corners the differential fuzzing found
    "{{ [nothing, 1] }}|{{ [1, 2][0, 1] is defined }}|{{ 3.0 is odd }}|{{ 4.0 is even }}|{{ -3 is odd }}|{{ 7.5 is divisibleby 2.5 }}|{{ none | select | list }}|{{ 0 | map('string') | list }}",
    # the transformers context
    "{{ bos_token }}|{{ eos_token }}|{{ add_generation_prompt }}|{{ tools }}|{{ documents }}|{{ tools is none }}|{{ custom_tools is defined }}",
    # errors (both sides must refuse)
    "{{ raise_exception('custom failure') }}",
    "{{ nothing.attr }}",
    "{{ nothing['k'] }}",
    "{{ nothing + 1 }}",
    "{{ 1 + 'a' }}",
    "{{ 1 < 'a' }}",
    "{{ 1 / 0 }}",
    "{{ 1 // 0 }}",
    "{{ 5 | length }}",
    "{{ 1 in 'abc' }}",
    "{{ 'a' in 5 }}",
    "{% for i in 5 %}{% endfor %}",
    "{{ nothing(1) }}",
    "{{ 5(1) }}",
    "{% if true %}unclosed",
    "{% endif %}",
    "{{ 'a' | nosuchfilter }}",
    "{{ 1 is nosuchtest }}",
    "{{ (1 }}",
    "{{ [1) }}",
    "{# unclosed comment",
    "{{ 'unclosed }}",
    "{{ 1 ",
    "{{ }}",
    "{{ nothing | tojson }}",
    "{% set q = 5 %}{% set q.a = 1 %}",
    "{% for a, b in [1] %}{% endfor %}",
    "{{ [1][0:1:0] }}",
    "{{ '\\N' }}",
    "{{ nothing is odd }}",
    "{{ 'a' - 'b' }}",
    "{% foo %}",
    "{% for x in [1] %}{% endif %}",
    "{{ [1] in d }}",
    "{{ nothing | int }}",
    "{{ n is boolean 1 }}",
    "{{ n is eq }}",
]


def load_templates():
    with open(os.path.join(FIXTURES, "templates.json"), encoding="utf-8") as f:
        manifest = json.load(f)
    out = []
    for t in manifest["templates"]:
        with open(os.path.join(FIXTURES, t["file"]), encoding="utf-8", newline="") as f:
            out.append({**t, "source_text": f.read()})
    return out


class Jinja2Renderer:
    """jinja2 configured as transformers' _compile_jinja_template configures it."""

    def __init__(self):
        import jinja2
        from jinja2.ext import loopcontrols
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        def raise_exception(message):
            raise jinja2.exceptions.TemplateError(message)

        def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
            return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

        def strftime_now(format):
            return NOW.strftime(format)

        self.env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
        self.env.filters["tojson"] = tojson
        self.env.globals["raise_exception"] = raise_exception
        self.env.globals["strftime_now"] = strftime_now
        self.name = f"jinja2 {jinja2.__version__} with transformers' settings (fallback, not transformers itself)"
        self.clock_fixed = True

    def render_source(self, source, context):
        return self.env.from_string(source).render(**context)

    def render(self, template, messages, add_generation_prompt, extra):
        compiled = self.env.from_string(template["source_text"])
        return compiled.render(messages=messages, tools=None, documents=None,
                               add_generation_prompt=add_generation_prompt,
                               bos_token=template["bos_token"], eos_token=template["eos_token"], **extra)


class TransformersRenderer:
    """transformers' own apply_chat_template, on a minimal tokenizer holding the special tokens."""

    def __init__(self):
        import transformers
        from tokenizers import Tokenizer, models
        from transformers import PreTrainedTokenizerFast

        self.transformers = transformers
        self.Tokenizer, self.models, self.Fast = Tokenizer, models, PreTrainedTokenizerFast
        self.name = f"transformers {transformers.__version__} apply_chat_template"
        self.clock_fixed = self._fix_clock()

    def _tokenizer(self, template):
        vocab = {"<unk>": 0, template["bos_token"]: 1, template["eos_token"]: 2}
        backend = self.Tokenizer(self.models.WordLevel(vocab, unk_token="<unk>"))
        return self.Fast(tokenizer_object=backend, bos_token=template["bos_token"], eos_token=template["eos_token"])

    def _fix_clock(self):
        try:
            import transformers.utils.chat_template_utils as ctu
        except ImportError:
            return False

        class FixedDatetime(datetime.datetime):
            @classmethod
            def now(cls, tz=None):
                return NOW

        if hasattr(ctu, "datetime"):
            ctu.datetime = FixedDatetime
        probe = {"bos_token": "<s>", "eos_token": "</s>",
                 "source_text": "{{ strftime_now('%Y-%m-%d %H:%M:%S') }}"}
        try:
            got = self.render(probe, [{"role": "user", "content": "x"}], False, {})
        except Exception as e:  # noqa: BLE001 - report, do not stop
            print(f"clock probe failed: {e}", file=sys.stderr)
            return False
        return got == NOW.strftime("%Y-%m-%d %H:%M:%S")

    def render_source(self, source, context):
        """transformers' own compiled environment when it exposes it, else apply_chat_template."""
        try:
            from transformers.utils.chat_template_utils import _compile_jinja_template
        except ImportError:
            _compile_jinja_template = None
        if _compile_jinja_template is not None and self._compiles():
            return _compile_jinja_template(source).render(**context)
        rest = {k: v for k, v in context.items() if k not in ("messages", "tools", "documents",
                                                              "add_generation_prompt", "bos_token", "eos_token")}
        template = {"bos_token": context["bos_token"], "eos_token": context["eos_token"], "source_text": source}
        return self.render(template, context["messages"], context["add_generation_prompt"], rest)

    def _compiles(self):
        """Whether transformers' private _compile_jinja_template still works as it did (4.4x)."""
        if not hasattr(self, "_compile_ok"):
            try:
                from transformers.utils.chat_template_utils import _compile_jinja_template
                self._compile_ok = _compile_jinja_template("{{ 1 + 1 }}{{ x }}").render(x="y") == "2y"
            except Exception:  # noqa: BLE001
                self._compile_ok = False
            if not self._compile_ok:
                print("transformers' _compile_jinja_template is not usable; jinja cases go through "
                      "apply_chat_template", file=sys.stderr)
        return self._compile_ok

    def render(self, template, messages, add_generation_prompt, extra):
        tok = self._tokenizer(template)
        out = tok.apply_chat_template(messages, chat_template=template["source_text"], tokenize=False,
                                      add_generation_prompt=add_generation_prompt, **extra)
        if not isinstance(out, str):
            raise TypeError(f"apply_chat_template(tokenize=False) returned {type(out).__name__}, not str")
        return out


def make_renderer(choice):
    """auto falls back to jinja2 only when transformers itself does not import: once it does,
    any failure to use it stops the script rather than quietly writing a jinja2 fixture."""
    if choice == "auto":
        try:
            import transformers  # noqa: F401
        except ImportError as e:
            print(f"transformers not importable ({e}); falling back to jinja2", file=sys.stderr)
            return Jinja2Renderer()
        return TransformersRenderer()
    return TransformersRenderer() if choice == "transformers" else Jinja2Renderer()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--renderer", choices=["auto", "transformers", "jinja2"], default="auto")
    parser.add_argument("--out", default=os.path.join(FIXTURES, "expected.json"))
    parser.add_argument("--jinja-out", default=os.path.join(FIXTURES, "jinja_cases.json"))
    args = parser.parse_args()

    renderer = make_renderer(args.renderer)
    cases = []
    for template in load_templates():
        for conv_name, messages in CONVERSATIONS.items():
            for add_generation_prompt in (True, False):
                for date_string in DATE_STRINGS:
                    if date_string and "date_string" not in template["source_text"]:
                        continue  # the template never reads it
                    case = {
                        "template": template["name"],
                        "conversation": conv_name,
                        "messages": messages,
                        "add_generation_prompt": add_generation_prompt,
                        "date_string": date_string,
                        "now_epoch": NOW_EPOCH,
                    }
                    reads_clock = "strftime_now" in template["source_text"] and date_string is None
                    if reads_clock and not renderer.clock_fixed:
                        case["skipped"] = "the renderer's clock could not be fixed"
                        cases.append(case)
                        continue
                    extra = {"date_string": date_string} if date_string else {}
                    try:
                        case["expected"] = renderer.render(template, messages, add_generation_prompt, extra)
                    except Exception as e:  # noqa: BLE001 - a template error is an expected outcome
                        case["error"] = f"{type(e).__name__}: {e}"
                    if date_string and date_string not in case.get("expected", date_string):
                        sys.exit(f"{template['name']}: date_string did not reach the template (the renderer "
                                 "dropped apply_chat_template's extra keyword arguments); fix the script")
                    cases.append(case)
    out = {
        "about": "Generated by tools/make_chat_fixtures.py; do not edit. Each case: render template with "
                 "messages, add_generation_prompt, date_string (absent when null) and strftime_now reading "
                 "now_epoch (UTC); 'expected' is the text, or 'error' says the renderer refused.",
        "renderer": renderer.name,
        "cases": cases,
    }
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")
    jinja_cases = []
    for source in JINJA_CASES:
        case = {"source": source}
        try:
            case["expected"] = renderer.render_source(source, JINJA_CONTEXT)
        except Exception as e:  # noqa: BLE001
            case["error"] = f"{type(e).__name__}: {e}"
        jinja_cases.append(case)
    with open(args.jinja_out, "w", encoding="utf-8") as f:
        json.dump({"about": "Generated by tools/make_chat_fixtures.py; do not edit. Each source rendered with "
                            "'context'; 'expected' is the text, or 'error' says the renderer refused.",
                   "renderer": renderer.name, "context": JINJA_CONTEXT, "cases": jinja_cases},
                  f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"{args.jinja_out}: {len(jinja_cases)} cases ({sum('error' in c for c in jinja_cases)} errors)")

    errors = sum("error" in c for c in cases)
    skipped = sum("skipped" in c for c in cases)
    print(f"{args.out}: {len(cases)} cases ({errors} errors, {skipped} skipped) by {renderer.name}")


if __name__ == "__main__":
    main()
