"""Options declared once on dataclass fields (ptuning.options): what a command line makes of them."""

import argparse
import enum
from dataclasses import dataclass, field

import pytest

from ptuning.cli import build_parser
from ptuning.config import PromptConfig
from ptuning.options import add_options, field_help, given_options, option_flag
from ptuning.training_args import TrainingArguments


class Colour(str, enum.Enum):
    RED = "RED"
    BLUE = "BLUE"


@dataclass
class Settings:  # the convention, as a ServingConfig would follow it
    max_batch: int = field(default=32, metadata={"help": "Texts per batch.", "flag": "--batch"})
    wait_ms: float | None = field(default=None, metadata={"help": "Longest wait.", "metavar": "MS"})
    colour: Colour = field(default=Colour.RED, metadata={"help": "Colour."})
    verbose: bool = field(default=False, metadata={"help": "Say more."})
    fast: bool = field(default=True, metadata={"help": "Go fast.", "flag": "--slow", "cli_help": "Go slowly."})


def parse(*argv) -> dict:
    parser = argparse.ArgumentParser()
    add_options(parser, Settings)
    return given_options(parser.parse_args(argv), Settings)


def test_only_the_options_given_are_returned_by_field_name():
    assert parse() == {}
    assert parse("--batch", "8", "--wait-ms", "2.5") == {"max_batch": 8, "wait_ms": 2.5}


def test_switches_set_the_opposite_of_the_default_and_enums_take_any_case():
    assert parse("--verbose", "--slow", "--colour", "blue") == {"verbose": True, "fast": False, "colour": "BLUE"}
    assert Settings(**parse("--colour", "blue")).colour == "BLUE"


def test_help_shows_the_flag_metavar_help_and_default():
    parser = argparse.ArgumentParser()
    add_options(parser, Settings)
    text = " ".join(parser.format_help().split())
    assert "--batch N Texts per batch. Default: 32." in text
    assert "--wait-ms MS Longest wait." in text and "--slow Go slowly." in text


def test_train_flags_keep_their_names_and_reach_the_dataclasses():
    argv = ["train", "d.csv", "--out", "o", "--model", "m", "--prompt-length", "7", "--encoder", "lstm",
            "--freeze-head", "--head-lr", "0.5", "--val-split", "0.2", "--resume"]  # fmt: skip
    a = build_parser().parse_args(argv)
    assert given_options(a, PromptConfig) == {
        "base_model": "m", "num_virtual_tokens": 7, "encoder_type": "LSTM", "train_head": False
    }  # fmt: skip
    assert given_options(a, TrainingArguments) == {"head_lr": 0.5, "val_split": 0.2, "resume": True}
    assert option_flag(PromptConfig, "num_virtual_tokens") == "--prompt-length"
    assert field_help(TrainingArguments, "seed").startswith("Random seed")


def test_an_unsupported_field_type_is_a_programming_error():
    @dataclass
    class Odd:
        names: list = field(default_factory=list, metadata={"help": "Names."})

    with pytest.raises(TypeError, match="names"):
        add_options(argparse.ArgumentParser(), Odd)
