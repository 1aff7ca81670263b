"""rl_curl: SAC agents on DeepMind Control pixels with the CURL contrastive auxiliary loss.

Built on ``core_ssl``; the agent, replay buffer and environment wrapper live here.
"""
