/* sdkconfig.h stand-in for compile checks (an ESP32-S3 build). */
#define CONFIG_IDF_TARGET_ESP32S3 1
