
91530112MAR8PJBP6Jkunming-hnzË (Ùç…À0ûó®28Æ@£HR7
	HT2024-01&Smart micro-grid controller (phase II) Z$Kunming Dianchi New Energy Co., Ltd.