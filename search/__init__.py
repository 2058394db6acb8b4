"""digits-zoo's search side: the evaluation protocol, tuner searches, the leaderboard and export."""

import zoo  # noqa: F401  (sets the Keras backend before anything imports keras)
