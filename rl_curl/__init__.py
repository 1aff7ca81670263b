"""rl_curl: SAC agents on DeepMind Control pixels with the CURL contrastive auxiliary loss.

Built on ``core_ssl``; the agent, replay buffer and environment wrapper live here:

- :mod:`rl_curl.envs`: dm_control tasks as gymnasium environments (``rl_curl/<domain>-<task>-v0``);
- :mod:`rl_curl.replay`: uint8 replay storing each rendered frame once;
- :mod:`rl_curl.agent`: SAC with the CURL encoder and a pluggable auxiliary loss;
- :mod:`rl_curl.train`: the training command, ``python -m rl_curl.train --env cheetah-run``;
- :mod:`rl_curl.video`: evaluation episodes as mp4 (with ffmpeg) or GIF.
"""
