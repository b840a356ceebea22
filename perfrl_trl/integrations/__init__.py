"""Thin entry points for training frameworks outside TRL, over the same judge as the reward function.

- :mod:`~perfrl_trl.integrations.openrlhf`: ``reward_func(queries, prompts, labels, **kwargs)``, the Python-file
  form of OpenRLHF's remote reward (``--reward.remote_url path/to/file.py``);
- :mod:`~perfrl_trl.integrations.verl`: ``compute_score(data_source, solution_str, ground_truth, extra_info)``,
  veRL's ``custom_reward_function``;
- :mod:`~perfrl_trl.integrations.protocol`: the wire format both share with ``perfrl-trl serve``.

Neither framework is imported: the wrappers only follow their calling conventions.
"""
