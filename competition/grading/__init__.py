"""Grade: a submission file in the competition's form -> its public and private scores with
intervals, the ledger of scored submissions, the rules over it and the leaderboard. Knows nothing
of how a submission was made."""
