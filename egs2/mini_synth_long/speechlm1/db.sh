# shellcheck shell=bash
# Where the corpora live on this machine or cluster (read by local/data.sh).
# Set the one your recipe needs; a recipe's local/data.sh says which layout it expects.
LIBRISPEECH=${LIBRISPEECH:-downloads/LibriSpeech}
COVOST2=${COVOST2:-downloads/covost2}          # covost_v2.en_de.tsv + Common Voice clips/
COMMONVOICE=${COMMONVOICE:-downloads/cv-corpus/en}
IEMOCAP=${IEMOCAP:-downloads/IEMOCAP_full_release}
export LIBRISPEECH COVOST2 COMMONVOICE IEMOCAP
