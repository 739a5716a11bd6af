"""LinCIR keyword masking: spaCy (official) vs the stop-word fallback, how often they disagree and how fast they run.

    python benchmarks/bench_keywords.py                       # needs the train-spacy extra
    python benchmarks/bench_keywords.py --n-synthetic 2000 --out benchmarks/results/keywords.json

Both maskers see the same cleaned captions (:func:`~cir_milvus.train.lincir.clean_caption`) and the same random
source for their one-random-word fallback. Reported per caption set:

- ``same_output``: share of captions whose masked strings are identical;
- ``same_slot_count``: share with the same number of ``$`` slots;
- ``word_agreement``: share of caption words that both maskers treat alike (masked or kept), over all words;
- ``fallback_rate``: share of captions where the masker found no keyword and masked one random word instead.

Caption sets: the synthetic world's training captions (what the demo trains on), and short lists written here in
the style of real captions: CC3M-style web captions (LinCIR's training data), and CIRCO and FashionIQ relative
captions (the evaluation queries' text; LinCIR never masks those, but they show how the two rules treat edit
language). The lists are this file's own sentences, not copied from the data sets.

The spaCy pipeline is loaded as LinCIR does (``spacy.load`` of the full English pipeline). The script also checks
that the part-of-speech tags of the full pipeline equal those of the pipeline without parser/NER/lemmatizer (which
would be faster) on every caption here.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

CC3M_STYLE = [
    "actor attends the premiere of the film",
    "a dog runs across a grassy field",
    "the view from the top of the mountain at sunset",
    "young woman holding a cup of coffee in a cafe",
    "person riding a bicycle on a city street",
    "a bowl of fresh fruit on a wooden table",
    "illustration of a cartoon cat sitting on a fence",
    "football player celebrates after scoring a goal",
    "aerial view of the old town and the river",
    "a little girl plays with her toys in the living room",
    "vintage car parked in front of a brick building",
    "close up of a red rose with water drops",
    "the bride and groom dance at their wedding reception",
    "a man in a suit talks on his phone",
    "snow covered trees in the forest during winter",
    "chef prepares a dish in the kitchen of the restaurant",
]

CIRCO_STYLE = [
    "has two dogs instead of one and they are lying on a sofa",
    "is taken at night and shows a bus",
    "the same animal but sleeping on the grass",
    "shows a train from the inside with people sitting",
    "has a child holding an umbrella in the rain",
    "is a black and white photo of a tennis player",
    "the pizza is whole and has more toppings",
    "has a giraffe eating leaves from a tall tree",
    "shows the same kind of bird but flying over water",
    "is a kitchen with a red refrigerator",
    "contains three people skiing down a slope",
    "has a clock tower and is photographed from below",
]

FASHIONIQ_STYLE = [
    "is shorter and more colorful",
    "has long sleeves and is darker",
    "is red with a v-neck",
    "is a t-shirt with a graphic print",
    "has no sleeves and a floral pattern",
    "is more fitted and blue",
    "is longer and has a belt",
    "has a collar and buttons down the front",
    "is white with black stripes",
    "is strapless and has a flowy skirt",
    "has a darker color and a logo on the chest",
    "is sheer with lace details",
]


def _synthetic(n: int) -> list[str]:
    import numpy as np

    from cir_milvus.synthetic import caption, random_attributes

    rng = np.random.default_rng(0)
    return [caption(random_attributes(rng), rng) for _ in range(n)]


def _word_marks(caption: str, masked: str) -> list[bool]:
    """Per token of ``caption`` (words, numbers, punctuation): was it masked? Tokens of the caption that survive in
    the masked string (a longest-common-subsequence alignment) were kept, the others were masked."""
    import difflib
    import re

    tok = re.compile(r"[A-Za-z][A-Za-z'-]*|\d+(?:[.,]\d+)?|\$|[^\sA-Za-z\d]")
    a, b = tok.findall(caption), tok.findall(masked)
    marks = [True] * len(a)
    for block in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_matching_blocks():
        for k in range(block.size):
            marks[block.a + k] = False
    return marks


def compare(captions: list[str], nlp: Any) -> dict[str, Any]:
    import numpy as np

    from cir_milvus.train.lincir import clean_caption, keyword_spans, mask_keywords, mask_keywords_spacy

    caps = [clean_caption(c) for c in captions]
    t0 = time.perf_counter()
    docs = list(nlp.pipe(caps))
    spans = [keyword_spans(d) for d in docs]
    spacy_out = [mask_keywords_spacy(c, s, np.random.default_rng(i)) for i, (c, s) in enumerate(zip(caps, spans,
                                                                                                     strict=True))]
    t_spacy = time.perf_counter() - t0
    t0 = time.perf_counter()
    rule_out = [mask_keywords(c, np.random.default_rng(i)) for i, c in enumerate(caps)]
    t_rule = time.perf_counter() - t0
    same = [a == b for a, b in zip(spacy_out, rule_out, strict=True)]
    slots = [a.split().count("$") == b.split().count("$") for a, b in zip(spacy_out, rule_out, strict=True)]
    agree = words = 0
    for c, a, b in zip(caps, spacy_out, rule_out, strict=True):
        ma, mb = _word_marks(c, a), _word_marks(c, b)
        agree += sum(x == y for x, y in zip(ma, mb, strict=True))
        words += len(ma)
    spacy_fallback = sum(not s or any(not x or x not in c for x in s) for s, c in zip(spans, caps, strict=True))
    from cir_milvus.train.lincir import STOP_WORDS

    rule_fallback = sum(all(w.lower() in STOP_WORDS or not w[0].isalpha() for w in c.split()) for c in caps)
    examples = [{"caption": c, "spacy": a, "rule": b} for c, a, b, s in zip(caps, spacy_out, rule_out, same,
                                                                            strict=True) if not s][:8]
    n = len(caps)
    return {
        "n": n,
        "same_output": round(sum(same) / n, 4),
        "same_slot_count": round(sum(slots) / n, 4),
        "word_agreement": round(agree / max(1, words), 4),
        "fallback_rate": {"spacy": round(spacy_fallback / n, 4), "rule": round(rule_fallback / n, 4)},
        "captions_per_s": {"spacy": round(n / t_spacy, 1), "rule": round(n / t_rule, 1)},
        "disagreements": examples,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-synthetic", type=int, default=2000)
    p.add_argument("--spacy-model", default=None, help="spaCy pipeline (default: the first installed of "
                                                         "cir_milvus.train.lincir.SPACY_MODELS)")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "keywords.json")
    args = p.parse_args(argv)

    import spacy

    from cir_milvus.train.lincir import load_spacy

    nlp = load_spacy(args.spacy_model)
    sets = {"synthetic": _synthetic(args.n_synthetic), "cc3m_style": CC3M_STYLE, "circo_style": CIRCO_STYLE,
            "fashioniq_style": FASHIONIQ_STYLE}
    results = {name: compare(caps, nlp) for name, caps in sets.items()}
    light = spacy.load(nlp.meta["lang"] + "_" + nlp.meta["name"], exclude=["parser", "ner", "lemmatizer"])
    all_caps = [c.lower() for caps in sets.values() for c in caps]
    same_pos = sum([t.pos_ for t in a] == [t.pos_ for t in b] for a, b in zip(nlp.pipe(all_caps),
                                                                               light.pipe(all_caps), strict=True))
    out = {
        "spacy": {"version": spacy.__version__, "model": f"{nlp.meta['lang']}_{nlp.meta['name']}",
                  "model_version": nlp.meta["version"], "pipeline": nlp.pipe_names},
        "pos_same_without_parser_ner_lemmatizer": f"{same_pos}/{len(all_caps)}",
        "machine": f"{platform.machine()}, {platform.processor() or platform.system()}",
        "command": "python benchmarks/bench_keywords.py --n-synthetic " + str(args.n_synthetic),
        "results": results,
    }
    for name, r in results.items():
        print(f"{name:16s} n={r['n']:5d}  same output {100 * r['same_output']:5.1f}%  same #slots "
              f"{100 * r['same_slot_count']:5.1f}%  word agreement {100 * r['word_agreement']:5.1f}%  fallback "
              f"spacy {100 * r['fallback_rate']['spacy']:.1f}% / rule {100 * r['fallback_rate']['rule']:.1f}%  "
              f"captions/s spacy {r['captions_per_s']['spacy']:.0f} / rule {r['captions_per_s']['rule']:.0f}")
    print(f"POS identical without parser/NER/lemmatizer: {out['pos_same_without_parser_ner_lemmatizer']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    return out


if __name__ == "__main__":
    main()
