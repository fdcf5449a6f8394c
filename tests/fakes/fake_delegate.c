/*
 * A stand-in for libedgetpu, loadable through the TensorFlow Lite external
 * delegate interface (tensorflow/lite/delegates/external/README.md):
 *
 *   TfLiteDelegate* tflite_plugin_create_delegate(
 *       char** keys, char** values, size_t n, void (*report_error)(const char*));
 *   void tflite_plugin_destroy_delegate(TfLiteDelegate* delegate);
 *
 * Options (all strings, as passed by load_delegate(path, options)):
 *   mode=passthrough   (default) a valid delegate that claims no nodes, so the
 *                      whole graph runs on the built-in CPU kernels
 *   mode=null          report an error and return NULL (load_delegate raises
 *                      ValueError with the reported text)
 *   mode=abort         abort() while loading
 *   abort_on_prepare=1 abort() when the interpreter applies the delegate
 *   hang_on_prepare=1  block forever when the interpreter applies the delegate
 *   fail_on_prepare=1  return kTfLiteError from Prepare
 *   prepare_ms=N       sleep N ms when the interpreter applies the delegate (a model
 *                      being loaded onto the device)
 *   latency_ms=N       (passthrough mode) claim the whole graph, like the Edge TPU
 *                      compiler's single custom op: each invoke sleeps N ms of wall
 *                      time (N may be fractional), uses almost no CPU, and writes a
 *                      valid class vector: one class (the invoke count modulo the
 *                      number of classes) at the highest value, every other at the
 *                      lowest.  This stands in for a USB or PCIe Coral's latency.
 *   device_lock=PATH   the device can be opened by one process at a time, as a real
 *                      Coral: creating the delegate takes an exclusive flock on PATH
 *                      (created if missing) and, when another process holds it,
 *                      reports "device busy" and returns NULL (load_delegate raises
 *                      ValueError).  Within one process the device is shared, as
 *                      libedgetpu shares one device context among the delegates that
 *                      name it: the lock is counted and released with the last one.
 *
 * No TensorFlow headers are needed: the structs below mirror the start of
 * TfLiteDelegate, TfLiteContext, TfLiteTensor and TfLiteNode and the whole of
 * TfLiteRegistration in tensorflow/lite/core/c/common.h, whose field order is
 * kept stable ("new values only at the end"). The runtime only reads the fields
 * it knows, and calloc leaves any later ones zero.
 */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/file.h>
#include <unistd.h>

#define FAKE_EXPORT __attribute__((visibility("default")))

typedef enum { kTfLiteOk = 0, kTfLiteError = 1 } TfLiteStatus;

typedef struct TfLiteDelegate {
  void* data_;
  TfLiteStatus (*Prepare)(void* context, struct TfLiteDelegate* delegate);
  TfLiteStatus (*CopyFromBufferHandle)(void* context, struct TfLiteDelegate* delegate,
                                       int buffer_handle, void* tensor);
  TfLiteStatus (*CopyToBufferHandle)(void* context, struct TfLiteDelegate* delegate,
                                     int buffer_handle, void* tensor);
  void (*FreeBufferHandle)(void* context, struct TfLiteDelegate* delegate, int* handle);
  int64_t flags;                 /* kTfLiteDelegateFlagsNone */
  void* opaque_delegate_builder; /* must stay NULL: Prepare above is used */
} TfLiteDelegate;

typedef struct {
  int size;
  int data[];
} TfLiteIntArray;

enum { kTfLiteFloat32 = 1, kTfLiteUInt8 = 3, kTfLiteInt8 = 9 };

typedef struct {
  int type;
  void* data;
  TfLiteIntArray* dims;
  float scale;
  int32_t zero_point;
  int allocation_type;
  size_t bytes;
} TfLiteTensor; /* the start of it */

typedef struct {
  TfLiteIntArray* inputs;
  TfLiteIntArray* outputs;
  TfLiteIntArray* intermediates;
  TfLiteIntArray* temporaries;
  void* user_data;
} TfLiteNode; /* the start of it */

typedef struct TfLiteContext TfLiteContext;

typedef struct {
  void* (*init)(TfLiteContext* context, const char* buffer, size_t length);
  void (*free)(TfLiteContext* context, void* buffer);
  TfLiteStatus (*prepare)(TfLiteContext* context, TfLiteNode* node);
  TfLiteStatus (*invoke)(TfLiteContext* context, TfLiteNode* node);
  const char* (*profiling_string)(const TfLiteContext* context, const TfLiteNode* node);
  int32_t builtin_code;
  const char* custom_name;
  int version;
  void* registration_external;
  void* async_kernel;
  uint64_t inplace_operator;
  void* reserved[4]; /* zero: room for fields a newer runtime may read */
} TfLiteRegistration;

struct TfLiteContext {
  size_t tensors_size;
  TfLiteStatus (*GetExecutionPlan)(TfLiteContext* context, TfLiteIntArray** execution_plan);
  TfLiteTensor* tensors_unused; /* indexed through tensor_at(): the real struct is larger */
  void* impl_;
  void* ResizeTensor;
  void (*ReportError)(TfLiteContext* context, const char* format, ...);
  void* AddTensors;
  void* GetNodeAndRegistration;
  TfLiteStatus (*ReplaceNodeSubsetsWithDelegateKernels)(TfLiteContext* context,
                                                        TfLiteRegistration registration,
                                                        const TfLiteIntArray* nodes_to_replace,
                                                        TfLiteDelegate* delegate);
};

typedef struct {
  int abort_on_prepare;
  int hang_on_prepare;
  int fail_on_prepare;
  unsigned long prepare_calls;
  double latency_ms;
  unsigned long invokes;
  int lock; /* index in held_locks, or -1 */
  double prepare_ms;
} FakeState;

/* The device locks this process holds: one open file (and flock) per path, counted. */
#define MAX_LOCKS 16
static struct {
  char path[256];
  int fd;
  int users;
} held_locks[MAX_LOCKS];

/* -1 with ``message`` set when the device is busy or the lock cannot be taken. */
static int take_device_lock(const char* path, char* message, size_t size) {
  int free_slot = -1;
  for (int i = 0; i < MAX_LOCKS; i++) {
    if (held_locks[i].users > 0 && strcmp(held_locks[i].path, path) == 0) {
      held_locks[i].users++;
      return i;
    }
    if (held_locks[i].users == 0 && free_slot < 0) {
      free_slot = i;
    }
  }
  if (free_slot < 0 || strlen(path) >= sizeof held_locks[0].path) {
    snprintf(message, size, "fake edgetpu: cannot track device lock '%s'", path);
    return -1;
  }
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    snprintf(message, size, "fake edgetpu: cannot open device lock '%s': %s", path,
             strerror(errno));
    return -1;
  }
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    close(fd);
    if (err == EWOULDBLOCK) {
      snprintf(message, size,
               "fake edgetpu: device busy: another process has opened it (lock '%s')", path);
    } else {
      snprintf(message, size, "fake edgetpu: cannot lock '%s': %s", path, strerror(err));
    }
    return -1;
  }
  strcpy(held_locks[free_slot].path, path);
  held_locks[free_slot].fd = fd;
  held_locks[free_slot].users = 1;
  return free_slot;
}

static void release_device_lock(int index) {
  if (index < 0 || index >= MAX_LOCKS || held_locks[index].users == 0) {
    return;
  }
  if (--held_locks[index].users == 0) {
    close(held_locks[index].fd); /* releases the flock */
    held_locks[index].fd = -1;
  }
}

static int is_true(const char* value) {
  return strcmp(value, "1") == 0 || strcmp(value, "true") == 0 || strcmp(value, "True") == 0;
}

/* TfLiteTensor is 112 bytes on 64-bit builds of the runtime; it is an array element,
 * so its full size matters, not only the fields read here. */
#define TENSOR_SIZE 112

static TfLiteTensor* tensor_at(TfLiteContext* context, int index) {
  return (TfLiteTensor*)((char*)context->tensors_unused + (size_t)index * TENSOR_SIZE);
}

static void* latency_init(TfLiteContext* context, const char* buffer, size_t length) {
  (void)context;
  (void)length;
  /* buffer is a TfLiteDelegateParams, whose first field is the delegate */
  TfLiteDelegate* delegate = *(TfLiteDelegate* const*)buffer;
  return delegate->data_;
}

static TfLiteStatus latency_node_prepare(TfLiteContext* context, TfLiteNode* node) {
  (void)context;
  (void)node;
  return kTfLiteOk;
}

static TfLiteStatus latency_invoke(TfLiteContext* context, TfLiteNode* node) {
  FakeState* state = (FakeState*)node->user_data;
  struct timespec pause_for;
  pause_for.tv_sec = (time_t)(state->latency_ms / 1000.0);
  pause_for.tv_nsec = (long)((state->latency_ms - pause_for.tv_sec * 1000.0) * 1e6);
  while (nanosleep(&pause_for, &pause_for) != 0) {
  }
  unsigned long call = state->invokes++;
  for (int i = 0; i < node->outputs->size; i++) {
    TfLiteTensor* out = tensor_at(context, node->outputs->data[i]);
    if (out->data == NULL || out->bytes == 0) {
      continue;
    }
    if (out->type == kTfLiteFloat32) {
      size_t n = out->bytes / sizeof(float);
      float* values = (float*)out->data;
      for (size_t j = 0; j < n; j++) {
        values[j] = 0.0f;
      }
      values[call % n] = 1.0f;
    } else if (out->type == kTfLiteInt8) {
      memset(out->data, 0x80, out->bytes);
      ((int8_t*)out->data)[call % out->bytes] = 127;
    } else {
      memset(out->data, 0, out->bytes);
      ((uint8_t*)out->data)[call % out->bytes] = 255;
    }
  }
  return kTfLiteOk;
}

static TfLiteStatus claim_whole_graph(TfLiteContext* context, TfLiteDelegate* delegate) {
  TfLiteIntArray* plan = NULL;
  if (context->GetExecutionPlan(context, &plan) != kTfLiteOk || plan == NULL) {
    return kTfLiteError;
  }
  TfLiteRegistration kernel;
  memset(&kernel, 0, sizeof kernel);
  kernel.init = latency_init;
  kernel.prepare = latency_node_prepare;
  kernel.invoke = latency_invoke;
  kernel.custom_name = "fake_edgetpu_latency";
  kernel.version = 1;
  return context->ReplaceNodeSubsetsWithDelegateKernels(context, kernel, plan, delegate);
}

static void sleep_ms(double ms) {
  struct timespec pause_for;
  pause_for.tv_sec = (time_t)(ms / 1000.0);
  pause_for.tv_nsec = (long)((ms - pause_for.tv_sec * 1000.0) * 1e6);
  while (nanosleep(&pause_for, &pause_for) != 0) {
  }
}

static TfLiteStatus fake_prepare(void* context, TfLiteDelegate* delegate) {
  FakeState* state = (FakeState*)delegate->data_;
  state->prepare_calls++;
  if (state->prepare_ms > 0) {
    sleep_ms(state->prepare_ms);
  }
  if (state->abort_on_prepare) {
    abort();
  }
  if (state->hang_on_prepare) {
    for (;;) {
      pause();
    }
  }
  if (state->fail_on_prepare) {
    return kTfLiteError;
  }
  if (state->latency_ms > 0) {
    return claim_whole_graph((TfLiteContext*)context, delegate);
  }
  /* Claim nothing: ReplaceNodeSubsetsWithDelegateKernels is never called. */
  return kTfLiteOk;
}

static void report(void (*report_error)(const char*), const char* message) {
  if (report_error != NULL) {
    report_error(message);
  }
}

FAKE_EXPORT TfLiteDelegate* tflite_plugin_create_delegate(char** keys, char** values,
                                                          size_t n,
                                                          void (*report_error)(const char*)) {
  const char* mode = "passthrough";
  const char* device_lock = NULL;
  FakeState options = {0, 0, 0, 0, 0.0, 0, -1, 0.0};
  char message[256];

  /* The Python binding declares the count as a C int; keep the low 32 bits. */
  n &= 0xffffffffu;
  for (size_t i = 0; i < n; i++) {
    const char* key = keys[i];
    const char* value = values[i];
    if (strcmp(key, "mode") == 0) {
      mode = value;
    } else if (strcmp(key, "abort_on_prepare") == 0) {
      options.abort_on_prepare = is_true(value);
    } else if (strcmp(key, "hang_on_prepare") == 0) {
      options.hang_on_prepare = is_true(value);
    } else if (strcmp(key, "fail_on_prepare") == 0) {
      options.fail_on_prepare = is_true(value);
    } else if (strcmp(key, "prepare_ms") == 0) {
      char* end = NULL;
      options.prepare_ms = strtod(value, &end);
      if (end == value || *end != '\0' || options.prepare_ms < 0) {
        snprintf(message, sizeof message,
                 "fake edgetpu: bad prepare_ms '%s': a number of milliseconds >= 0", value);
        report(report_error, message);
        return NULL;
      }
    } else if (strcmp(key, "device_lock") == 0) {
      device_lock = value;
    } else if (strcmp(key, "latency_ms") == 0) {
      char* end = NULL;
      options.latency_ms = strtod(value, &end);
      if (end == value || *end != '\0' || options.latency_ms < 0) {
        snprintf(message, sizeof message,
                 "fake edgetpu: bad latency_ms '%s': a number of milliseconds >= 0", value);
        report(report_error, message);
        return NULL;
      }
    }
    /* Unknown keys (e.g. "device" as libedgetpu takes) are ignored. */
  }

  if (strcmp(mode, "null") == 0) {
    report(report_error, "fake edgetpu: no Edge TPU device found");
    return NULL;
  }
  if (strcmp(mode, "abort") == 0) {
    abort();
  }
  if (strcmp(mode, "passthrough") != 0) {
    snprintf(message, sizeof message,
             "fake edgetpu: bad mode '%s': valid modes are passthrough, null, abort", mode);
    report(report_error, message);
    return NULL;
  }

  if (device_lock != NULL && device_lock[0] != '\0') {
    options.lock = take_device_lock(device_lock, message, sizeof message);
    if (options.lock < 0) {
      report(report_error, message);
      return NULL;
    }
  }

  TfLiteDelegate* delegate = calloc(1, sizeof(TfLiteDelegate) + 64);
  FakeState* state = calloc(1, sizeof(FakeState));
  if (delegate == NULL || state == NULL) {
    free(delegate);
    free(state);
    release_device_lock(options.lock);
    report(report_error, "fake edgetpu: out of memory");
    return NULL;
  }
  *state = options;
  delegate->data_ = state;
  delegate->Prepare = fake_prepare;
  delegate->flags = 0;
  return delegate;
}

FAKE_EXPORT void tflite_plugin_destroy_delegate(TfLiteDelegate* delegate) {
  if (delegate == NULL) {
    return;
  }
  if (delegate->data_ != NULL) {
    release_device_lock(((FakeState*)delegate->data_)->lock);
  }
  free(delegate->data_);
  free(delegate);
}

/* Test hook: how many times the interpreter called Prepare on this delegate. */
FAKE_EXPORT unsigned long fake_delegate_prepare_calls(const TfLiteDelegate* delegate) {
  if (delegate == NULL || delegate->data_ == NULL) {
    return 0;
  }
  return ((const FakeState*)delegate->data_)->prepare_calls;
}
