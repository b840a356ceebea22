"""BibTeX entries for the work perfrl_trl implements, shared by the model card and the metric card."""

PERFRL = """\
@article{duan2023perfrl,
  title   = {PerfRL: A Small Language Model Framework for Efficient Code Optimization},
  author  = {Duan, Shukai and Kanakaris, Nikos and Xiao, Xiongye and Ping, Heng and Zhou, Chenyu and
             Ahmed, Nesreen K. and Ma, Guixiang and Capota, Mihai and Willke, Theodore L. and
             Nazarian, Shahin and Bogdan, Paul},
  journal = {arXiv preprint arXiv:2312.05657},
  year    = {2023}
}
"""

PIE = """\
@inproceedings{shypula2024learning,
  title     = {Learning Performance-Improving Code Edits},
  author    = {Shypula, Alexander and Madaan, Aman and Zeng, Yimeng and Alon, Uri and Gardner, Jacob and
               Hashemi, Milad and Neubig, Graham and Ranganathan, Parthasarathy and Bastani, Osbert and
               Yazdanbakhsh, Amir},
  booktitle = {The Twelfth International Conference on Learning Representations (ICLR)},
  year      = {2024},
  note      = {arXiv:2302.07867}
}
"""

RRHF = """\
@article{yuan2023rrhf,
  title   = {RRHF: Rank Responses to Align Language Models with Human Feedback without tears},
  author  = {Yuan, Zheng and Yuan, Hongyi and Tan, Chuanqi and Wang, Wei and Huang, Songfang and Huang, Fei},
  journal = {arXiv preprint arXiv:2304.05302},
  year    = {2023}
}
"""
