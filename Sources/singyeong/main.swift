import Singyeong
SingyeongMain.main()
