"""Stand-ins for vLLM at the edge of TRL's generation code, built on a transformers model.

TRL's vLLM paths (``trl.generation.vllm_generation``) only run where vLLM is installed, which takes a GPU.
What matters for our methods happens on TRL's side of them: which prompts it sends, how it slices the
replies back onto rows, how it syncs weights and corrects for sampling. So the stand-ins replace only
what TRL talks to — ``vllm.LLM`` and ``SamplingParams`` in colocate mode, ``VLLMClient`` in server mode —
and answer as those do, from a transformers copy of the model: prompts as token ids plus frames, ``n``
samples per prompt, the sampled tokens' processed log-probabilities, weights pushed by TRL's sync loaded
into the copy. Everything between the trainer and that edge is TRL's own code.

Like the real engine, the stand-in sizes frames with the processor of the model folder (or with
``mm_processor_kwargs``), and refuses a prompt whose image-token runs do not match, so a pixel budget
that would not reach vLLM fails here too. ``anatomy-r1 check`` and the tests use them; every prompt and
completion they generate is kept in :attr:`StandinEngine.log` for inspection.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from anatomy_r1.training.rollouts import image_token_runs


@dataclass
class Generation:
    """One request the engine served: the prompt it generated from and the completions it returned."""

    prompt_ids: tuple[int, ...]
    n: int
    completions: list[tuple[int, ...]]


class StandinEngine:
    """A model folder loaded with transformers, generating as vLLM would from token ids and frames."""

    def __init__(
        self, model_path: str, *, min_pixels: int | None = None, max_pixels: int | None = None
    ) -> None:
        from anatomy_r1.models.loading import load_model, load_processor

        self.model_path = str(model_path)
        self.model = load_model(model_path, dtype="fp32").eval()
        self.processor = load_processor(model_path, min_pixels=min_pixels, max_pixels=max_pixels)
        self.tokenizer = getattr(self.processor, "tokenizer", self.processor)
        self.image_token_id = int(self.processor.image_token_id)
        self.log: list[Generation] = []
        self.weight_loads = 0

    # ------------------------------------------------------------------ frames
    def tokens_per_image(self, images: list[Any]) -> list[int]:
        """Image tokens each frame becomes under this engine's processor."""
        grid = self.processor.image_processor(images=images, return_tensors="pt")["image_grid_thw"]
        merge = int(getattr(self.processor.image_processor, "merge_size", 2))
        return [int(g.prod()) // (merge * merge) for g in grid]

    def _check_runs(self, prompt_ids: list[int], images: list[Any]) -> None:
        ours = self.tokens_per_image(images)
        runs = image_token_runs(prompt_ids, self.image_token_id)
        if runs != ours:
            raise ValueError(
                f"the prompt holds image-token runs {runs} but the engine's processor makes {ours} tokens of "
                "its frames (the prompt was sized with another pixel range)"
            )

    # ------------------------------------------------------------------ generation
    def generate(
        self,
        prompt_ids: list[int],
        images: list[Any] | None,
        *,
        n: int,
        temperature: float = 1.0,
        top_p: float = 1.0,
        top_k: int = 0,
        max_tokens: int = 16,
    ) -> list[tuple[list[int], list[float]]]:
        """``n`` sampled completions of one prompt, each with its tokens' processed log-probabilities."""
        import torch

        kwargs: dict[str, Any] = {}
        if images:
            self._check_runs(prompt_ids, images)
            feats = self.processor.image_processor(images=images, return_tensors="pt")
            kwargs = {"pixel_values": feats["pixel_values"], "image_grid_thw": feats["image_grid_thw"]}
        ids = torch.tensor([prompt_ids], dtype=torch.long)
        eos = self.model.generation_config.eos_token_id
        eos_ids = {int(e) for e in (eos if isinstance(eos, list) else [eos]) if e is not None}
        if self.tokenizer.eos_token_id is not None:
            eos_ids.add(int(self.tokenizer.eos_token_id))
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else min(eos_ids)
        suppress = [
            t for t in (self.image_token_id, getattr(self.processor, "video_token_id", None)) if t is not None
        ]
        greedy = temperature <= 0
        with torch.no_grad():
            out = self.model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                do_sample=not greedy,
                temperature=None if greedy else temperature,
                top_p=None if greedy else top_p,
                top_k=top_k if top_k and not greedy else None,
                max_new_tokens=max_tokens,
                num_return_sequences=n,
                eos_token_id=sorted(eos_ids),
                pad_token_id=pad,
                suppress_tokens=suppress,
                output_scores=True,
                return_dict_in_generate=True,
                **kwargs,
            )
        new = out.sequences[:, ids.shape[1] :]
        logps = torch.stack([torch.log_softmax(s.float(), dim=-1) for s in out.scores], dim=1)
        results = []
        for row in range(new.shape[0]):
            toks: list[int] = []
            lps: list[float] = []
            for t in range(new.shape[1]):
                tok = int(new[row, t])
                toks.append(tok)
                lp = float(logps[row, t, tok])
                lps.append(lp if math.isfinite(lp) else float("nan"))
                if tok in eos_ids:
                    break
            results.append((toks, lps))
        self.log.append(Generation(tuple(int(t) for t in prompt_ids), n, [tuple(c) for c, _ in results]))
        return results

    def load_weights(self, named: Iterable[tuple[str, Any]]) -> None:
        """Weights as TRL's sync streams them (``name`` as in the training model's ``named_parameters``)."""
        params = dict(self.model.named_parameters())
        for name, tensor in named:
            if name not in params:
                raise KeyError(f"stand-in engine: no parameter named {name!r}")
            params[name].data.copy_(tensor.detach().to(params[name].dtype))
        self.weight_loads += 1

    def generated_from(self, prompt_ids: Iterable[int], completion_ids: Iterable[int]) -> bool:
        """Whether this engine produced ``completion_ids`` as a completion of exactly ``prompt_ids``."""
        p, c = tuple(int(t) for t in prompt_ids), tuple(int(t) for t in completion_ids)
        return any(g.prompt_ids == p and c in g.completions for g in self.log)


# ------------------------------------------------------------------------------------------ colocate mode
class StandinSamplingParams:
    """``vllm.SamplingParams``: the keyword arguments TRL builds, kept as attributes."""

    def __init__(self, **kwargs: Any) -> None:
        self.n = 1
        self.temperature = 1.0
        self.top_p = 1.0
        self.top_k = 0
        self.max_tokens = 16
        self.__dict__.update(kwargs)


class StandinLLM:
    """``vllm.LLM`` in colocate mode: TRL's constructor arguments are kept in :attr:`engine_args`."""

    def __init__(self, model: str, *, mm_processor_kwargs: dict[str, int] | None = None, **engine_args: Any):
        self.engine = StandinEngine(model, **(mm_processor_kwargs or {}))
        self.engine_args = {"mm_processor_kwargs": mm_processor_kwargs, **engine_args}
        worker = SimpleNamespace(
            model_runner=SimpleNamespace(model=SimpleNamespace(load_weights=self.engine.load_weights))
        )
        self.llm_engine = SimpleNamespace(model_executor=SimpleNamespace(driver_worker=worker))
        _REGISTRY.engines.append(self.engine)

    def generate(
        self, prompts: list[dict[str, Any]], sampling_params: Any = None, use_tqdm: bool = False
    ) -> list[Any]:
        sp = sampling_params or StandinSamplingParams()
        outputs = []
        for p in prompts:
            mm = (p.get("multi_modal_data") or {}).get("image")
            images = None if mm is None else (mm if isinstance(mm, list) else [mm])
            samples = self.engine.generate(
                list(p["prompt_token_ids"]),
                images,
                n=int(sp.n),
                temperature=float(sp.temperature),
                top_p=float(sp.top_p),
                top_k=int(sp.top_k or 0),
                max_tokens=int(sp.max_tokens),
            )
            outs = [
                SimpleNamespace(
                    token_ids=toks,
                    logprobs=[
                        {tok: SimpleNamespace(logprob=lp, rank=1)} for tok, lp in zip(toks, lps, strict=True)
                    ],
                )
                for toks, lps in samples
            ]
            outputs.append(SimpleNamespace(prompt_token_ids=list(p["prompt_token_ids"]), outputs=outs))
        return outputs

    def reset_prefix_cache(self) -> None:
        """Nothing is cached between calls."""

    def sleep(self, level: int = 1) -> None:
        """The copy stays in memory; TRL re-pushes weights after level-2 sleep anyway."""

    def wake_up(self, tags: list[str] | None = None) -> None:
        """See :meth:`sleep`."""


# -------------------------------------------------------------------------------------------- server mode
class StandinVLLMClient:
    """``trl.generation.vllm_client.VLLMClient`` talking to a server that serves :attr:`model_path`."""

    def __init__(
        self, model_path: str, server_pixels: dict[str, int] | None = None, **client_args: Any
    ) -> None:
        self.engine = StandinEngine(model_path, **(server_pixels or {}))
        self.client_args = client_args
        self.communicator = None
        _REGISTRY.engines.append(self.engine)

    def get_server_info(self) -> dict[str, Any]:
        return {
            "model_config": {"logprobs_mode": "processed_logprobs"},
            "weight_transfer_config": {"backend": "copy"},
        }

    def init_communicator(self, device: Any = 0) -> None:
        """Weights arrive through :meth:`update_named_params` in this process; no process group is needed."""

    def close_communicator(self) -> None:
        """See :meth:`init_communicator`."""

    def image_features(self, images: list[list[Any] | None], **_: Any) -> list[dict[str, Any] | None]:
        """Frames processed on the server's side: their token counts as its processor makes them."""
        feats: list[dict[str, Any] | None] = []
        for imgs in images:
            if not imgs:
                feats.append(None)
                continue
            lengths = self.engine.tokens_per_image(list(imgs))
            feats.append(
                {
                    "images": list(imgs),
                    "mm_placeholders": {"image": [{"offset": 0, "length": n} for n in lengths]},
                }
            )
        return feats

    def generate(
        self,
        prompts: list[list[int]],
        features: list[dict[str, Any] | None] | None = None,
        n: int = 1,
        temperature: float = 1.0,
        top_p: float = 1.0,
        top_k: int = 0,
        max_tokens: int = 16,
        **_: Any,
    ) -> dict[str, Any]:
        completion_ids: list[list[int]] = []
        logprobs: list[list[list[float]]] = []
        token_ids: list[list[list[int]]] = []
        for i, ids in enumerate(prompts):
            feat = features[i] if features is not None else None
            if feat is not None:
                placed = [int(p["length"]) for p in feat["mm_placeholders"]["image"]]
                runs = image_token_runs(ids, self.engine.image_token_id)
                if placed != runs:
                    raise ValueError(f"features placed at runs {placed} but the prompt holds runs {runs}")
            samples = self.engine.generate(
                list(ids),
                None if feat is None else feat["images"],
                n=n,
                temperature=temperature,
                top_p=top_p,
                top_k=top_k,
                max_tokens=max_tokens,
            )
            for toks, lps in samples:
                completion_ids.append(toks)
                logprobs.append([[lp] for lp in lps])
                token_ids.append([[t] for t in toks])
        return {
            "prompt_ids": [list(p) for p in prompts],
            "completion_ids": completion_ids,
            "logprobs": logprobs,
            "logprob_token_ids": token_ids,
        }

    def update_named_params(self, metadata: Any, named_params: Iterator[tuple[str, Any]]) -> None:
        self.engine.load_weights(named_params)

    def reset_prefix_cache(self) -> None:
        """Nothing is cached between calls."""


# ------------------------------------------------------------------------------------------- installing
@dataclass
class _Registry:
    engines: list[StandinEngine] = field(default_factory=list)


_REGISTRY = _Registry()

#: Environment variables TRL's colocate set-up writes (``RANK``, ``WORLD_SIZE``, ``MASTER_PORT``, ...).
_RENDEZVOUS_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@contextlib.contextmanager
def standin_vllm(
    server_model: str | None = None, server_pixels: dict[str, int] | None = None
) -> Iterator[list[StandinEngine]]:
    """Install the stand-ins in TRL's generation module for the duration of the block.

    ``server_model`` is the folder the stand-in server serves (``trl vllm-serve --model``), and
    ``server_pixels`` its ``--mm-processor-kwargs`` pixel range (None: the folder's own). Yields the list
    of engines created inside the block, filled as they are created.
    """
    import trl.generation.vllm_generation as vg

    saved = {
        name: getattr(vg, name, None) for name in ("is_vllm_available", "LLM", "SamplingParams", "VLLMClient")
    }
    outer = _REGISTRY.engines
    engines: list[StandinEngine] = []
    _REGISTRY.engines = engines

    def client(*_: Any, **kwargs: Any) -> StandinVLLMClient:
        if server_model is None:
            raise ValueError("standin_vllm: server mode needs server_model, the folder the server serves")
        return StandinVLLMClient(server_model, server_pixels, **kwargs)

    # TRL's colocate set-up exports the rendezvous variables a launcher would have set; a single process
    # that keeps them would make every later run in it, or started from it, set up torch.distributed.
    env = {k: os.environ.get(k) for k in _RENDEZVOUS_ENV}
    vg.is_vllm_available = lambda *a, **k: True  # type: ignore[assignment]
    vg.LLM = StandinLLM  # type: ignore[attr-defined]
    vg.SamplingParams = StandinSamplingParams  # type: ignore[attr-defined]
    vg.VLLMClient = client  # type: ignore[assignment]
    try:
        yield engines
    finally:
        _REGISTRY.engines = outer
        for k, v in env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        for name, value in saved.items():
            if value is None:
                if hasattr(vg, name):
                    delattr(vg, name)
            else:
                setattr(vg, name, value)
