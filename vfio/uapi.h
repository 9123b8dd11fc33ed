// <linux/vfio.h> plus the kernel's offsetofend(), which the UAPI's argsz rules are written in.
#pragma once

#include <linux/vfio.h>

#include <cstddef>

#ifndef offsetofend
#define offsetofend(TYPE, MEMBER) (offsetof(TYPE, MEMBER) + sizeof(((TYPE*)nullptr)->MEMBER))
#endif
