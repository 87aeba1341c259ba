/* ESP-IDF header stand-in for compile checks: see esp_idf_fake.h. */
#include "esp_idf_fake.h"
