
91650104MA7M0JCT5L
urumqi-hnzË (µÊìê/0â‹“À8—@xHÅR(
	HT2024-01Solar thermal collector R(
	HT2024-02Solar thermal collector Z"Urumqi Anheng New Energy Co., Ltd.