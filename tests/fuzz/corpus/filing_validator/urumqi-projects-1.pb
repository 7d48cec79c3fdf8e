
916501045968934359
urumqi-hnzè (õÃ¹’0õÿÑB8@HR;
	HT2024-01*High-purity polysilicon process (phase II) Z'Urumqi Kailian Special Alloys Co., Ltd.