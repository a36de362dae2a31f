"""A SQuAD-format file -> pairs over chunks cut like the service's, on the committed part of
the SQuAD 2.0 training set."""

from __future__ import annotations

import gzip
import json
from collections import Counter

import pytest

from jobs.squad_pairs import SquadOptions, load_squad, squad_pairs
from jobs.training_data import TrainingDataError
from tests.conftest import ROOT

SQUAD = ROOT / "training" / "squad2-train" / "train-v2.0-part.json.gz"


@pytest.fixture(scope="module")
def articles():
    return load_squad(SQUAD)


def article(articles, title):
    return next(a for a in articles if a["title"] == title)


def test_every_positive_holds_its_answer_and_every_hard_negative_none(articles, counter):
    zelda = article(articles, "The_Legend_of_Zelda:_Twilight_Princess")
    answers = {
        qa["id"]: [a["text"] for a in qa["answers"]] for p in zelda["paragraphs"] for qa in p["qas"]
    }
    made = list(squad_pairs([zelda], counter, SquadOptions(perturb=0.0)))
    kinds = Counter(p.kind for p in made)
    assert kinds["answer"] > 150 and kinds["hard_negative"] > 300 and kinds["unanswerable"] > 100
    for pair in made:
        if pair.kind == "answer":
            assert pair.label == 1 and any(a in pair.passage for a in answers[pair.question_id])
        if pair.kind == "hard_negative" and answers[pair.question_id]:
            assert not any(a in pair.passage for a in answers[pair.question_id])
        assert counter.count([pair.passage])[0] <= 200  # chunks of the service's size


def test_unanswerable_questions_get_the_chunks_of_their_own_paragraph(articles, counter):
    spectre = article(articles, "Spectre_(2015_film)")
    made = list(squad_pairs([spectre], counter, SquadOptions(perturb=0.0)))
    paragraphs = {qa["id"]: p["context"] for p in spectre["paragraphs"] for qa in p["qas"]}
    unanswerable = [p for p in made if p.kind == "unanswerable"]
    assert unanswerable and all(p.label == 0 for p in unanswerable)
    for pair in unanswerable:
        words = set(paragraphs[pair.question_id].split())
        assert len(words & set(pair.passage.split())) > 10


def test_perturbed_questions_are_negatives_of_the_passage_that_answered(articles, counter):
    beyonce = article(articles, "Beyoncé")
    made = list(squad_pairs([beyonce], counter, SquadOptions(perturb=1.0, seed=1)))
    answered = {p.question_id: p for p in made if p.kind == "answer"}
    perturbed = [p for p in made if p.kind == "perturbed"]
    assert len(perturbed) > len(answered) / 2
    for pair in perturbed:
        original = answered[pair.question_id.removesuffix("-perturbed")]
        assert pair.label == 0 and pair.passage == original.passage
        assert pair.question != original.question


def test_a_file_of_another_shape_is_refused(tmp_path):
    path = tmp_path / "x.json.gz"
    with gzip.open(path, "wt") as out:
        json.dump({"rows": []}, out)
    with pytest.raises(TrainingDataError, match="expected"):
        load_squad(path)
    (tmp_path / "y.json").write_text("not json")
    with pytest.raises(TrainingDataError, match="not a SQuAD-format"):
        load_squad(tmp_path / "y.json")
