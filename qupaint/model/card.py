"""The model card (``README.md`` with YAML metadata) that ``save_pretrained`` writes."""

from __future__ import annotations

__all__ = ["model_card"]


def _yaml_list(key: str, values) -> list[str]:
    return [f"{key}:"] + [f"- {v}" for v in values] if values else []


def model_card(config, name: str = "QuPAINT") -> str:
    """Markdown with the Hub's YAML header: ``library_name``, ``pipeline_tag``,
    ``base_model``, ``datasets``, ``tags`` and, when ``config.qfbench`` holds QF-Bench
    results (``{"AP": ..., "AP50": ..., ...}`` in %), a ``model-index``."""
    base = getattr(config, "base_model", None)
    datasets = list(getattr(config, "datasets", None) or ["QMat-Instruct (qupaint instruct)"])
    results = getattr(config, "qfbench", None) or {}
    head = ["---", "library_name: transformers", "pipeline_tag: image-text-to-text",
            "license: other"]  # fmt: skip
    if base:
        head.append(f"base_model: {base}")
    head += _yaml_list("datasets", datasets)
    head += _yaml_list("tags", ["qupaint", "2d-materials", "optical-microscopy",
                                "physics-informed-attention", "internvl"])  # fmt: skip
    if results:
        head += ["model-index:", f"- name: {name}", "  results:", "  - task:",
                 "      type: object-detection", "    dataset:", "      name: QF-Bench",
                 "      type: qf-bench", "    metrics:"]  # fmt: skip
        for k, v in results.items():
            head += [f"    - type: {k}", f"      value: {float(v):.2f}"]
    head.append("---")
    gate = "on" if getattr(config, "use_pia_gate", True) else "off (the no-PIA ablation)"
    body = [
        "",
        f"# {name}",
        "",
        "A QuPAINT model (*QuPAINT: Physics-Aware Instruction Tuning Approach to Quantum "
        "Material Discovery*): an InternVL-family vision-language model whose ViT patch "
        f"tokens are scaled by the physics-informed attention (PIA) gate ({gate}). Written by "
        "[qupaint](https://github.com/uark-cviu/QuPAINT)-compatible tools.",
        "",
        "```python",
        "import qupaint.model  # registers the QuPAINT classes with transformers",
        "from transformers import pipeline",
        'pipe = pipeline("image-text-to-text", model="PATH")',
        'pipe(text=[{"role": "user", "content": [{"type": "image", "image": "chip.png"},',
        '      {"type": "text", "text": "How many monolayer flakes are there?"}]}])',
        "```",
        "",
    ]
    if base:
        body += [f"Base model: `{base}`.", ""]
    if results:
        scores = ", ".join(f"{k} {float(v):.1f}" for k, v in results.items())
        body += [f"QF-Bench (COCO metrics, %): {scores}", ""]
    else:
        body += ["QF-Bench results: not measured for this checkpoint "
                 "(`qupaint eval model` measures them).", ""]  # fmt: skip
    return "\n".join(head + body)
