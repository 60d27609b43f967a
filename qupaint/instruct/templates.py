"""Paraphrased question and answer templates of QMat-Instruct (QuPAINT Sec. 4.3, Fig. 6-15).

Each task has several phrasings; the builder picks one with the image's seeded generator.
Placeholders: ``{cat}`` (e.g. "monolayer"), ``{material}``, ``{n}``, ``{box}``, ``{ref}``.
"""

from __future__ import annotations

COUNT_Q = (
    "How many {cat} flakes are in the image?",
    "How many {cat} {material} flakes can you see?",
    "Count the {cat} flakes in this image.",
    "What is the number of {cat} flakes in this optical micrograph?",
    "Please count all {cat} {material} flakes on the substrate.",
    "How many {cat} flakes does this sample contain?",
)
COUNT_ALL_Q = (
    "How many flakes are in the image?",
    "Count all {material} flakes in this image, whatever their thickness.",
    "How many exfoliated flakes are on this chip?",
    "What is the total number of flakes in this micrograph?",
)
COUNT_A = (
    "There are {n} {cat} flakes in the image.",
    "I count {n} {cat} flakes.",
    "The image contains {n} {cat} flakes.",
    "{n} {cat} flakes.",
)

LOCATE_Q = (
    "Locate the {cat} flakes.",
    "Where are the {cat} {material} flakes in this image?",
    "Find every {cat} flake and give its bounding box.",
    "Mark the {cat} flakes in this micrograph with boxes.",
    "Give the bounding boxes of all {cat} flakes.",
)
DETECT_Q = (
    "Detect all flakes and classify each one as Mono, Few or Thick.",
    "Find every {material} flake and label its thickness class (Mono, Few, Thick).",
    "Locate all flakes in the image with their layer category.",
    "List the bounding box and thickness class of each flake.",
)
LOCATE_A = (
    "The {cat} flakes are at: {box}",
    "Found {n}: {box}",
    "Here are the {cat} flakes: {box}",
)
LOCATE_NONE_A = (
    "There are no {cat} flakes in this image.",
    "No {cat} flakes are visible.",
    "I find no {cat} flakes here.",
)

VERIFY_Q = (
    "Does this sample contain a {cat} {material} flake?",
    "Is there any {cat} {material} flake in the image?",
    "Can you find a {cat} flake of {material} here?",
    "Is a {cat} {material} flake present on this chip?",
)
VERIFY_YES_A = (
    "Yes. There is a {cat} {material} flake at {box}.",
    "Yes, for example the flake at {box} is {cat}.",
    "Yes: {box} is a {cat} {material} flake.",
)
VERIFY_NO_A = (
    "No. This image contains no {cat} {material} flake.",
    "No, there is no {cat} {material} flake here.",
    "No. None of the flakes is a {cat} {material} flake.",
)

DESCRIBE_Q = (
    "Describe the flake at {box}.",
    "What can you tell about the flake at {box} from its optical contrast?",
    "Estimate the number of layers of the flake at {box} and explain why.",
    "Analyse the colour and contrast of the flake at {box}.",
)

#: the opening sentence of every description: its layer class, material and layer count
#: (``layers``: "a monolayer" or "N layers", :func:`qupaint.instruct.context.layers_words`).
#: The corpus writes it, constrained decoding holds answers to it, and
#: :func:`qupaint.instruct.parse.description_class` reads the class back from it.
DESCRIBE_A = "This is a {cat} {material} flake ({layers})."

GROUND_Q = (
    "Locate {ref}.",
    "Where is {ref}?",
    "Give the bounding box of {ref}.",
    "Find {ref} in the image.",
)
#: referring expressions: key -> phrase; the builder uses a key only when it names one flake
REFS = {
    "largest": "the largest {cat} flake",
    "smallest": "the smallest {cat} flake",
    "faintest": "the flake with the lowest contrast to the substrate",
    "strongest": "the flake with the highest contrast to the substrate",
    "thickest": "the thickest flake",
}

DIALOGUE_Q1 = (
    "Which flake candidates do you see in this image?",
    "Enumerate the flake candidates in this micrograph.",
    "List every flake candidate on this chip.",
)
DIALOGUE_Q2 = (
    "Using their optical contrast, which of them are monolayers and why?",
    "Reason about the layer number of each candidate from its colour contrast.",
    "Which candidates are monolayers? Explain with the thin-film physics.",
)
DIALOGUE_Q3 = (
    "What is your conclusion?",
    "So, where are the monolayer flakes?",
    "Give the final answer: the monolayer flakes and their boxes.",
)
