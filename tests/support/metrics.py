"""Reading what the metrics page serves: samples parsed with prometheus_client's own parser, summed by label, and the
values each worker wrote to a multiprocess directory."""

from __future__ import annotations

import glob
import json
import os
from collections import Counter

from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.parser import text_string_to_metric_families

Sample = tuple[str, dict[str, str], float]


def parse(text: str) -> list[Sample]:
    """Every sample of a text exposition (name, labels, value); raises if the text does not parse."""
    return [(sample.name, sample.labels, sample.value)
            for family in text_string_to_metric_families(text) for sample in family.samples]


def total(text: str, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``; 0 when there is none."""
    return sum(value for sample_name, sample_labels, value in parse(text)
               if sample_name == name and all(sample_labels.get(k) == v for k, v in labels.items()))


def by_label(text: str, name: str, label: str, **labels: str) -> dict[str, float]:
    """``name``'s samples matching ``labels``, summed per value of ``label``."""
    sums: Counter[str] = Counter()
    for sample_name, sample_labels, value in parse(text):
        if sample_name == name and all(sample_labels.get(k) == v for k, v in labels.items()):
            sums[sample_labels.get(label, "")] += value  # type: ignore[assignment]
    return {key: value for key, value in sums.items() if value}


def worker_values(directory: str, name: str, prefix: str = "counter") -> dict[int, list[tuple[dict[str, str], float]]]:
    """From a multiprocess directory: per process id, the samples named ``name`` (labels, value) as each process
    wrote them in its ``prefix`` file (counter, histogram, gauge_livesum)."""
    found: dict[int, list[tuple[dict[str, str], float]]] = {}
    for path in glob.glob(os.path.join(directory, f"{prefix}_*.db")):
        pid = int(os.path.basename(path)[len(prefix) + 1:-3])
        for key, value, _timestamp, _position in MmapedDict.read_all_values_from_file(path):
            _family, sample_name, labels, _help = json.loads(key)
            if sample_name == name:
                found.setdefault(pid, []).append((labels, value))
    return found
